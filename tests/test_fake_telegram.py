"""The real python-telegram-bot 22 client, polling and sending against FakeTelegram."""

from __future__ import annotations

import asyncio
import datetime as dtm
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    Update,
)
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

from tests.fakes.telegram_api import Call, FakeTelegram, RateLimits

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


# -- flood limits (RateLimits): a fake clock, so nothing depends on timing ---------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def limited(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeTelegram, Bot]]:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    async with (
        FakeTelegram(limits=RateLimits(), clock=FakeClock()) as fake,
        Bot(fake.token, base_url=fake.api_base) as bot,
    ):
        yield fake, bot


def _private(fake: FakeTelegram, n: int) -> list[int]:
    return [fake.private_chat(fake.user(500 + i, f"user{i}"))["id"] for i in range(n)]


async def test_limits_are_off_by_default(fake: FakeTelegram) -> None:
    fake.group(GROUP_ID, "Art club")
    async with Bot(fake.token, base_url=fake.api_base) as bot:
        for i in range(40):
            await bot.send_message(GROUP_ID, f"hello {i}")
    assert len(fake.sent("sendMessage")) == 40
    assert fake.throttled == []


async def test_the_31st_message_in_a_second_is_answered_429(
    limited: tuple[FakeTelegram, Bot],
) -> None:
    fake, bot = limited
    clock = fake.clock
    assert isinstance(clock, FakeClock)
    chats = _private(fake, 31)
    for chat in chats[:30]:
        await bot.send_message(chat, "hi")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(chats[30], "hi")

    assert caught.value.retry_after == dtm.timedelta(seconds=1)
    assert [c.chat_id for c in fake.throttled] == [chats[30]]
    assert fake.throttled[0].error == "Too Many Requests: retry after 1"
    assert len(fake.sent("sendMessage")) == 30
    clock.now += 0.999  # the first 30 still within the last second
    with pytest.raises(RetryAfter):
        await bot.send_message(chats[30], "hi")
    clock.now += 0.001  # they slid out: room for 30 again
    await bot.send_message(chats[30], "hi")
    assert len(fake.throttled) == 2


async def test_a_group_takes_20_messages_a_minute(limited: tuple[FakeTelegram, Bot]) -> None:
    fake, bot = limited
    clock = fake.clock
    assert isinstance(clock, FakeClock)
    fake.group(GROUP_ID, "Art club")
    other = -1009999
    fake.group(other, "Other club")
    (private,) = _private(fake, 1)
    for i in range(20):
        clock.now += 0.5  # 2 a second: well within the bot-wide limit
        await bot.send_message(GROUP_ID, f"hello {i}")
    first_at = 1000.5
    clock.now += 0.5
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(GROUP_ID, "one too many")
    # The first of the 20 slides out of the minute at first_at + 60.
    assert caught.value.retry_after == dtm.timedelta(seconds=math.ceil(first_at + 60 - clock.now))
    # Only that group is full: another group and a private chat still get theirs.
    await bot.send_message(other, "hello")
    await bot.send_message(private, "hello")
    clock.now = first_at + 60
    await bot.send_message(GROUP_ID, "room again")
    assert len(fake.throttled) == 1


async def test_what_counts_as_a_message(limited: tuple[FakeTelegram, Bot]) -> None:
    fake, bot = limited
    fake.group(GROUP_ID, "Art club")
    user = fake.user(7, "Ann")
    asked = fake.send_text(fake.group(GROUP_ID, "Art club"), user, "/imagine a cat")
    # Not messages: reactions and chat actions, any number of them.
    for _ in range(40):
        await bot.send_chat_action(GROUP_ID, "typing")
    await bot.set_message_reaction(GROUP_ID, asked["message_id"], "👀")
    # A media group of 3 counts 3 (toward the group's 20 too), an edit and a delete 1 each.
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    await bot.send_media_group(GROUP_ID, [InputMediaPhoto(png) for _ in range(3)])
    status = await bot.send_message(GROUP_ID, "status")
    await bot.edit_message_text("status 2", chat_id=GROUP_ID, message_id=status.message_id)
    for i in range(14):
        await bot.send_message(GROUP_ID, f"hello {i}")
    # 3 + 1 + 1 + 14 = 19 in the group; a delete counts only toward the bot-wide limit.
    await bot.delete_message(GROUP_ID, status.message_id)
    await bot.send_message(GROUP_ID, "the 20th")
    with pytest.raises(RetryAfter):
        await bot.send_message(GROUP_ID, "the 21st")
    # Bot-wide: 20 messages and the delete are 21 of the second's 30.
    (private,) = _private(fake, 1)
    for _ in range(9):
        await bot.send_message(private, "hi")
    with pytest.raises(RetryAfter):
        await bot.send_message(private, "the 31st")
    assert [c.params.get("text") for c in fake.throttled] == ["the 21st", "the 31st"]


async def test_deletes_can_be_left_out_of_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    limits = RateLimits(bot_per_window=2, count_deletes=False)
    async with (
        FakeTelegram(limits=limits, clock=FakeClock()) as fake,
        Bot(fake.token, base_url=fake.api_base) as bot,
    ):
        (chat,) = _private(fake, 1)
        first = await bot.send_message(chat, "one")
        await bot.delete_message(chat, first.message_id)
        await bot.send_message(chat, "two")
        with pytest.raises(RetryAfter):
            await bot.send_message(chat, "three")
        assert len(fake.throttled) == 1


# -- what creative sessions use: pins, albums with captions, keyboards edited alone ------


async def test_only_an_admin_bot_pins_in_a_group(fake: FakeTelegram) -> None:
    group = fake.group(GROUP_ID, "Art club")
    chat = fake.private_chat(fake.user(7, "Bo"))
    async with Bot(fake.token, base_url=fake.api_base) as bot:
        card = await bot.send_message(GROUP_ID, "the card")
        with pytest.raises(BadRequest, match=r"(?i)not enough rights to manage pinned messages"):
            await bot.pin_chat_message(GROUP_ID, card.message_id, disable_notification=True)
        assert fake.pinned == {}
        fake.chat_admins[GROUP_ID] = {fake.bot_id}
        assert await bot.pin_chat_message(GROUP_ID, card.message_id, disable_notification=True)
        assert fake.pinned[GROUP_ID] == [card.message_id]
        service = fake.messages[(GROUP_ID, card.message_id + 1)]
        assert service["pinned_message"]["text"] == "the card"
        assert (await bot.get_chat(GROUP_ID)).pinned_message.message_id == card.message_id
        with pytest.raises(BadRequest, match=r"(?i)message to pin not found"):
            await bot.pin_chat_message(GROUP_ID, 999)
        assert await bot.unpin_chat_message(GROUP_ID, card.message_id)
        assert fake.pinned[GROUP_ID] == []
        fake.chat_admins[GROUP_ID] = set()
        with pytest.raises(BadRequest, match=r"(?i)not enough rights"):
            await bot.unpin_chat_message(GROUP_ID, card.message_id)
        # A private chat needs no rights.
        mine = await bot.send_message(chat["id"], "pinned here")
        assert await bot.pin_chat_message(chat["id"], mine.message_id)
    assert group["id"] == GROUP_ID


async def test_an_album_keeps_each_caption_and_takes_no_keyboard(fake: FakeTelegram) -> None:
    fake.group(GROUP_ID, "Art club")
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    markup = {"inline_keyboard": [[{"text": "x", "callback_data": "x"}]]}
    async with Bot(fake.token, base_url=fake.api_base) as bot:
        sent = await bot.send_media_group(
            GROUP_ID,
            [InputMediaPhoto(png, caption=f"#{n} by Ann") for n in (1, 2, 3)],
            api_kwargs={"reply_markup": markup},
        )
        assert [m.caption for m in sent] == ["#1 by Ann", "#2 by Ann", "#3 by Ann"]
        assert len({m.media_group_id for m in sent}) == 1
        assert all(m.reply_markup is None for m in sent)
        with pytest.raises(BadRequest, match=r"(?i)media must include 2-10 items"):
            await bot.send_media_group(GROUP_ID, [InputMediaPhoto(png)])
        with pytest.raises(BadRequest, match=r"(?i)MEDIA_GROUP_INVALID"):
            await bot.send_media_group(
                GROUP_ID, [InputMediaPhoto(png), InputMediaDocument(png, filename="a.png")]
            )
        with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
            await bot.send_media_group(
                GROUP_ID, [InputMediaPhoto(png, caption="x" * 1025), InputMediaPhoto(png)]
            )


async def test_a_keyboard_is_edited_alone_on_the_bots_own_messages(
    limited: tuple[FakeTelegram, Bot],
) -> None:
    fake, bot = limited
    group = fake.group(GROUP_ID, "Art club")
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)

    def votes(n: int) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([[InlineKeyboardButton(f"❤️ {n}", callback_data="vt:a")]])

    photo = await bot.send_photo(GROUP_ID, png, caption="#1", reply_markup=votes(0))
    edited = await bot.edit_message_reply_markup(GROUP_ID, photo.message_id, reply_markup=votes(1))
    assert isinstance(edited, Message) and edited.caption == "#1"
    assert fake.messages[(GROUP_ID, photo.message_id)]["reply_markup"] == votes(1).to_dict()
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(GROUP_ID, photo.message_id, reply_markup=votes(1))
    theirs = fake.send_text(group, fake.user(42, "Ann"), "hello")
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_reply_markup(GROUP_ID, theirs["message_id"], reply_markup=votes(1))
    # An edit counts toward the group's 20 a minute like a new message: four so far (the
    # fake counts a request it admitted, whatever its answer).
    for i in range(16):
        await bot.edit_message_reply_markup(GROUP_ID, photo.message_id, reply_markup=votes(i + 2))
    with pytest.raises(RetryAfter):
        await bot.edit_message_reply_markup(GROUP_ID, photo.message_id, reply_markup=votes(99))


async def test_a_callback_answer_takes_200_characters(fake: FakeTelegram) -> None:
    chat = fake.private_chat(fake.user(7, "Bo"))
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Vote", callback_data="vt:1")]])
    async with Bot(fake.token, base_url=fake.api_base) as bot:
        sent = await bot.send_message(chat["id"], "an entry", reply_markup=markup)
        shown = fake.messages[(7, sent.message_id)]
        query_id = fake.press_button(chat, fake.users[7], shown, "vt:1")
        with pytest.raises(BadRequest, match=r"(?i)MESSAGE_TOO_LONG"):
            await bot.answer_callback_query(query_id, "x" * 201)
        assert await bot.answer_callback_query(query_id, "x" * 200)


async def test_a_second_long_poll_ends_the_first_with_409(fake: FakeTelegram) -> None:
    """Two bot instances polling at once: Telegram ends the waiting poll with Conflict."""
    from telegram.error import Conflict

    async with (
        Bot(fake.token, base_url=fake.api_base) as one,
        Bot(fake.token, base_url=fake.api_base) as two,
    ):
        first = asyncio.create_task(one.get_updates(timeout=5, read_timeout=10))
        while not fake._polls_waiting:  # the first poll waits at the server
            await asyncio.sleep(0.005)
        assert await two.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates"):
            await first
        assert fake.poll_conflicts == 1
        fake.send_text(fake.group(GROUP_ID, "g"), fake.user(7, "Ann"), "hello")
        [update] = await one.get_updates(timeout=1)  # alone again: no conflict
        assert update.message is not None and update.message.text == "hello"
    assert fake.poll_conflicts == 1
