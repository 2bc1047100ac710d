"""Discord's numbers, named once."""

from __future__ import annotations

from bot.constants import JOB_KEY_LENGTH

__all__ = [
    "CUSTOM_ID_TEMPLATE",
    "DEFAULT_UPLOAD_LIMIT",
    "DISCORD_API_BASE",
    "HISTORY_LENGTH",
    "IMAGE_TYPES",
    "INTERACTION_TOKEN_TTL_S",
    "MAX_CHOICES",
    "MAX_CHOICE_NAME",
    "MAX_CONTENT",
    "MAX_FILES",
    "PLATFORM",
    "REMEMBER_DELIVERED",
    "TOKEN_GONE_CODES",
    "TOKEN_MARGIN_S",
    "TOO_LARGE_CODE",
]

PLATFORM = "discord"
DISCORD_API_BASE = "https://discord.com/api/v10"
INTERACTION_TOKEN_TTL_S = 15 * 60.0
TOKEN_MARGIN_S = 60.0  # stop using an interaction token this long before Discord does
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # an unboosted server
MAX_CHOICES = 25  # autocomplete choices
MAX_CHOICE_NAME = 100
MAX_CONTENT = 2000
MAX_FILES = 10
REMEMBER_DELIVERED = 10_000  # job ids the sink keeps to drop late progress updates
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
# Invalid webhook token, unknown webhook, unknown message, unknown interaction.
TOKEN_GONE_CODES = frozenset({50027, 10015, 10008, 10062})
TOO_LARGE_CODE = 40005
HISTORY_LENGTH = 10  # jobs /history lists, each with at most one button (Discord allows 25)
# Buttons naming a job: Reroll, Animate, 4K under a result; Confirm and Cancel on a request
# waiting for its asker; Cancel on a job waiting its turn; Send again under /history.
CUSTOM_ID_TEMPLATE = (
    rf"genrelay:(?P<action>rr|an|4k|cf|cx|sa):(?P<job>[a-z0-9]{{{JOB_KEY_LENGTH}}})"
)
