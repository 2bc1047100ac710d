"""Answers to an interaction: Discord wants one within 3 seconds, then takes the rest through
the interaction's token. A refusal is private; a request that starts a job is answered with
a public "thinking…" that becomes the job's status message; after an unexpected failure,
an apology in whichever answer is still open. Once deferred, an answer is never deleted for
an ephemeral followup (Discord can answer that followup with 10008 Unknown Message,
discord-api-docs#2739)."""

from __future__ import annotations

import logging
import warnings
from contextlib import suppress
from typing import Any

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.sink import DISCORD_FAILURES
from bot.errors import RequestRejected

__all__ = ["apologise", "defer_thinking", "refuse", "refuse_deferred"]

log = logging.getLogger(__name__)


async def defer_thinking(interaction: discord.Interaction[Any]) -> int:
    """A public "thinking" response; its message becomes the status message."""
    sent = await interaction.response.defer(thinking=True)
    if sent is not None and sent.message_id is not None:
        return sent.message_id
    return (await interaction.original_response()).id


async def refuse(interaction: discord.Interaction[Any], exc: RequestRejected) -> None:
    """A refusal as the first answer: private."""
    log.info("discord: interaction %s refused (%s)", interaction.id, exc.code)
    await interaction.response.send_message(exc.message, ephemeral=True)


async def refuse_deferred(interaction: discord.Interaction[Any], exc: RequestRejected) -> None:
    """A refusal after the public defer: the "thinking…" message becomes it (deleting it
    for an ephemeral followup can meet 10008 Unknown Message)."""
    log.info("discord: interaction %s refused after the defer (%s)", interaction.id, exc.code)
    await interaction.edit_original_response(content=exc.message)


async def apologise(interaction: discord.Interaction[Any], text: str | None) -> None:
    """Say `text` in the interaction's own answer: the first response (ephemeral), or
    the deferred "thinking…" message turned into it. Never a DELETE of that message for
    an ephemeral followup (10008 Unknown Message). After a deferred button update, whose
    original is the message under the button (a job's status), a private followup, that
    message left as it is; an answer already given stands."""
    if text is None:
        return
    response = interaction.response
    with suppress(*DISCORD_FAILURES):
        if not response.is_done():
            await response.send_message(text, ephemeral=True)
        elif response.type is discord.InteractionResponseType.deferred_channel_message:
            await interaction.edit_original_response(content=text)
        elif response.type is discord.InteractionResponseType.deferred_message_update:
            await interaction.followup.send(text, ephemeral=True)
        else:
            log.info("discord: interaction %s already answered; no apology", interaction.id)
