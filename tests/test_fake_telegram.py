"""The real python-telegram-bot 22 client, polling and sending against FakeTelegram."""

from __future__ import annotations

import asyncio
import datetime as dtm
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram_api import Call, FakeTelegram

App = Application[Any, Any, Any, Any, Any, Any]

GROUP_ID = -1001234567890


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeTelegram]:
    # PTB 22 warns (PTBDeprecationWarning) whenever an int time period is read, e.g. inside
    # RetryAfter.__init__; with warnings as errors, opt in to the timedelta behaviour.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    async with FakeTelegram() as fake:
        yield fake


async def imagine(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    await update.message.reply_text(" ".join(context.args or []), do_quote=True)


async def photo_length(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    photo = update.message.photo[-1]
    data = await (await photo.get_file()).download_as_bytearray()
    await update.message.reply_text(f"photo {len(data)} bytes", do_quote=True)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("ok")
    await query.edit_message_text(f"picked {query.data}")


@pytest.fixture
async def app(fake: FakeTelegram) -> AsyncIterator[App]:
    application: App = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.api_base)
        .base_file_url(fake.file_base)
        .build()
    )
    application.add_handler(CommandHandler("imagine", imagine))
    application.add_handler(MessageHandler(filters.PHOTO & filters.CAPTION, photo_length))
    application.add_handler(CallbackQueryHandler(on_button))
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0, timeout=1)
    try:
        yield application
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()


async def test_command_in_group_gets_a_reply(fake: FakeTelegram, app: App) -> None:
    group = fake.group(GROUP_ID, "Art club")
    ann = fake.user(42, "Ann", "ann")
    message = fake.send_text(group, ann, "/imagine@genrelay_bot a fox")
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 21}]

    call = await fake.wait_for("sendMessage")

    assert call.chat_id == GROUP_ID
    assert call.params["text"] == "a fox"
    assert call.params["reply_parameters"]["message_id"] == message["message_id"]
    assert call.result["reply_to_message"]["message_id"] == message["message_id"]
    assert call.result["from"]["username"] == "genrelay_bot"
    assert app.bot.username == "genrelay_bot"


async def test_captioned_photo_is_downloaded(fake: FakeTelegram, app: App) -> None:
    group = fake.group(GROUP_ID, "Art club")
    ann = fake.user(42, "Ann")
    data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    message = fake.send_photo(group, ann, data, caption="/imagine make it blue")
    assert message["caption_entities"] == [{"type": "bot_command", "offset": 0, "length": 8}]

    call = await fake.wait_for("sendMessage")

    assert call.params["text"] == f"photo {len(data)} bytes"
    assert call.params["reply_parameters"]["message_id"] == message["message_id"]
    download = await fake.wait_for("downloadFile")
    assert download.params["file_path"].startswith("photos/")


async def test_bot_uploads_photo_and_edits_after_button(fake: FakeTelegram, app: App) -> None:
    chat = fake.private_chat(fake.user(7, "Bo"))
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Again", callback_data="again:1")]])

    sent = await app.bot.send_photo(
        chat["id"], photo=b"\x89PNG fake", caption="hi", reply_markup=markup
    )

    assert sent.photo[-1].width == 1280
    assert sent.caption == "hi"
    assert sent.reply_markup == markup
    call = await fake.wait_for("sendPhoto")
    assert call.upload is not None and call.upload[1] == b"\x89PNG fake"

    text_msg = await app.bot.send_message(chat["id"], "pick one", reply_markup=markup)
    since = len(fake.calls)
    query_id = fake.press_button(
        chat, fake.users[7], fake.messages[(7, text_msg.message_id)], "again:1"
    )

    answer = await fake.wait_for("answerCallbackQuery", since=since)
    edit = await fake.wait_for("editMessageText", since=since)
    assert answer.params["callback_query_id"] == query_id
    assert edit.result["text"] == "picked again:1"
    assert "reply_markup" not in edit.result  # edits without reply_markup drop the keyboard
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await app.bot.edit_message_text("picked again:1", chat["id"], text_msg.message_id)


async def test_injected_429_raises_retry_after(fake: FakeTelegram, app: App) -> None:
    fake.group(GROUP_ID, "Art club")
    fake.fail_next("sendMessage", status=429, retry_after=1)

    with pytest.raises(RetryAfter) as caught:
        await app.bot.send_message(GROUP_ID, "hello")

    assert caught.value.retry_after == dtm.timedelta(seconds=1)
    failed = await fake.wait_for("sendMessage", ok=False)
    assert failed.status == 429
    assert fake.sent("sendMessage") == []
    sent = await app.bot.send_message(GROUP_ID, "hello again")
    assert sent.message_id == 1  # the failed call created no message


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("999:WRONG", base_url=fake.api_base):
            pass
    assert fake.calls[-1].method == "getMe"
    assert fake.calls[-1].status == 401


async def test_reactions_are_recorded_and_checked(fake: FakeTelegram, app: App) -> None:
    group = fake.group(GROUP_ID, "Art club")
    message = fake.send_text(group, fake.user(42, "Ann"), "/imagine a fox")

    assert await app.bot.set_message_reaction(GROUP_ID, message["message_id"], "👀") is True
    assert fake.reactions[(GROUP_ID, message["message_id"])] == [{"type": "emoji", "emoji": "👀"}]
    call = await fake.wait_for("setMessageReaction")
    assert call.chat_id == GROUP_ID and call.params["message_id"] == message["message_id"]

    with pytest.raises(BadRequest, match=r"(?i)message to react not found"):
        await app.bot.set_message_reaction(GROUP_ID, 999, "👀")
    with pytest.raises(BadRequest, match=r"(?i)reaction_invalid"):
        await app.bot.set_message_reaction(GROUP_ID, message["message_id"], "no-such-emoji")
    fake.fail_next("setMessageReaction", status=400, description="Bad Request: REACTION_INVALID")
    with pytest.raises(BadRequest):
        await app.bot.set_message_reaction(GROUP_ID, message["message_id"], "👍")
    assert fake.reactions[(GROUP_ID, message["message_id"])][0]["emoji"] == "👀"


async def test_a_hook_runs_on_the_next_call_of_its_method_then_it_is_handled(
    fake: FakeTelegram,
) -> None:
    group = fake.group(GROUP_ID, "Art club")
    seen: list[tuple[str, Any, int]] = []
    released = asyncio.Event()

    async def hold(call: Call) -> None:
        seen.append((call.method, call.params.get("text"), len(fake.messages)))
        await released.wait()

    fake.on_next("sendMessage", hold)
    fake.on_next("sendMessage", lambda call: seen.append((call.method, "second", 0)))
    bot = Bot(fake.token, base_url=fake.api_base)
    async with bot:
        first = asyncio.create_task(bot.send_message(GROUP_ID, "held"))
        while not seen:
            await asyncio.sleep(0.01)
        assert not first.done() and (GROUP_ID, 1) not in fake.messages  # not handled yet
        released.set()
        message = await first
        await bot.send_message(GROUP_ID, "next")
        await bot.send_message(GROUP_ID, "no hook left")
    assert message.text == "held" and fake.messages[(group["id"], message.message_id)]
    assert seen == [("sendMessage", "held", 0), ("sendMessage", "second", 0)]
