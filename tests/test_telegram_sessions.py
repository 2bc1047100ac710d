"""Creative sessions on Telegram, end to end: the real python-telegram-bot client inside
TelegramAdapter against FakeTelegram, the sandbox as the gateway, and a real core with its
session loop. A session's whole life: /session start and its card (pinned where the bot may),
entries by several people labelled and with a vote button, a remix by reply, votes (100 at
once count exactly 100), the end by command and by timer, the recap album, a restart in the
middle, /history marks, and the refusals, each in words."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from adapters.telegram import TelegramAdapter
from adapters.telegram.flood import FloodControl
from adapters.telegram.texts import entry_buttons, voted_job, with_votes
from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Job, JobAction, JobState, Kind, Origin
from sandbox import SandboxGateway
from tests.conftest import running
from tests.fakes.telegram_api import Call, FakeTelegram
from tests.test_telegram import FORUM_ID, GROUP_ID, TOKEN

JSONDict = dict[str, Any]

ANN, BOB, CY, DEE = 42, 43, 44, 45
START = 1_800_000_000 - 1_800_000_000 % 86400 + 12 * 3600  # 12:00 UTC
THEME = "Foxes in snow"
HERE = Origin(platform="telegram", chat_id=str(GROUP_ID), user_id=str(DEE))


class ShiftedClock:
    """Real time from 12:00 UTC, plus whatever a test adds with `advance`."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        return START + time.monotonic() - self._start + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class Party:
    """A group where Ann is an admin, Bob, Cy and Dee are members."""

    fake: FakeTelegram
    sandbox: SandboxGateway
    core: Core
    adapter: TelegramAdapter
    clock: ShiftedClock
    group: JSONDict
    ann: JSONDict
    bob: JSONDict
    cy: JSONDict
    dee: JSONDict

    def say(self, user: JSONDict, text: str, reply_to: JSONDict | None = None) -> JSONDict:
        return self.fake.send_text(self.group, user, text, reply_to=reply_to)

    async def answer(self, message: JSONDict) -> str:
        """The text of the reply to `message` (a command answered in words)."""
        return str((await self.fake.wait_for("sendMessage", answers(message))).params["text"])

    async def result(self, message: JSONDict) -> JSONDict:
        """The photo the command `message` made, as the chat has it now."""
        call = await self.fake.wait_for("sendPhoto", answers(message), timeout=10)
        return self.fake.messages[(GROUP_ID, call.result["message_id"])]

    async def press(self, user: JSONDict, message: JSONDict, data: str) -> Call:
        """Press a button of one of our messages; the answerCallbackQuery call."""
        shown = self.fake.messages[(GROUP_ID, message["message_id"])]
        query_id = self.fake.press_button(self.group, user, shown, data)
        return await self.fake.wait_for(
            "answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id
        )

    async def card(self, n: int = 1, since: int = 0) -> Call:
        """The n-th session card posted (a message of ours that replies to nothing)."""
        return await self.fake.wait_for(
            "sendMessage",
            is_card,
            n=n,
            since=since,
        )


def is_card(call: Call) -> bool:
    """A session card: a message of ours that starts so and replies to nothing (/session's
    answer, which shows the same, is a reply)."""
    return str(call.params["text"]).startswith("🎨 Session:") and (
        "reply_parameters" not in call.params
    )


def answers(message: JSONDict) -> Callable[[Call], bool]:
    """A call replying to `message` (in its chat)."""
    chat_id, message_id = message["chat"]["id"], message["message_id"]
    return lambda c: (
        str(c.chat_id) == str(chat_id)
        and (c.params.get("reply_parameters") or {}).get("message_id") == message_id
    )


def vote_data(photo: JSONDict) -> str:
    rows = photo["reply_markup"]["inline_keyboard"]
    return next(b["callback_data"] for row in rows for b in row if b["callback_data"][:3] == "vt:")


def vote_label(fake: FakeTelegram, photo: JSONDict) -> str:
    shown = fake.messages[(GROUP_ID, photo["message_id"])]
    data = vote_data(shown)
    rows = shown["reply_markup"]["inline_keyboard"]
    return next(b["text"] for row in rows for b in row if b["callback_data"] == data)


async def until(check: Callable[[], bool], timeout: float = 8.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


OpenParty = Callable[..., AbstractAsyncContextManager[Party]]


@pytest.fixture
def open_party(
    fake: FakeTelegram, sandbox: SandboxGateway, make_settings: Callable[..., Settings]
) -> OpenParty:
    clock = ShiftedClock()  # one per test: a restart keeps the time

    @asynccontextmanager
    async def opener(*, bot_admin: bool = True, **overrides: Any) -> AsyncIterator[Party]:
        overrides.setdefault("telegram_status_board_after", 100)  # each job its own line
        settings = make_settings(
            aa_base_url=sandbox.base_url,
            telegram_bot_token=SecretStr(fake.token),
            telegram_api_base_url=fake.api_base,
            telegram_file_base_url=fake.file_base,
            **overrides,
        )
        fake.chat_admins[GROUP_ID] = {ANN, fake.bot_id} if bot_admin else {ANN}
        limiter = FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=1)
        async with open_core(settings, clock=clock) as core:
            # Cards follow every change at once here (the loop's pace is the core's test).
            core.session_keeper.card_interval_s = 0.0
            core.session_keeper.card_clock_s = 0.0
            async with (
                running(core),
                TelegramAdapter(
                    core, settings, poll_timeout_s=1.0, rate_limiter=limiter
                ) as adapter,
            ):
                yield Party(
                    fake=fake,
                    sandbox=sandbox,
                    core=core,
                    adapter=adapter,
                    clock=clock,
                    group=fake.group(GROUP_ID, "Art club"),
                    ann=fake.user(ANN, "Ann", "ann"),
                    bob=fake.user(BOB, "Bob", "bob"),
                    cy=fake.user(CY, "Cy", "cy"),
                    dee=fake.user(DEE, "Dee"),
                )

    return opener


@pytest.fixture
async def party(open_party: OpenParty) -> AsyncIterator[Party]:
    async with open_party() as p:
        yield p


async def start(party: Party, args: str = f"{THEME} --for 30m") -> Call:
    """Ann starts a session; its card."""
    since = len(party.fake.calls)
    party.say(party.ann, f"/session start {args}")
    return await party.card(since=since)


# -- a whole session ------------------------------------------------------------------------


async def test_a_session_from_start_to_recap(party: Party) -> None:
    fake = party.fake
    card = await start(party)
    text = str(card.params["text"])
    assert text.startswith(f"🎨 Session: “{THEME}”\n⏳ 30 min left (until 12:30 UTC)")
    assert "0 entries by 0 people" in text
    assert "Rules: the chat's usual limits." in text
    assert "reply_parameters" not in card.params  # the card is the answer, in the chat
    card_id = card.result["message_id"]
    await until(lambda: fake.pinned.get(GROUP_ID) == [card_id])
    pin = await fake.wait_for("pinChatMessage")
    assert pin.params["disable_notification"] is True

    # Entries by several people: labelled, each with a vote button and Remix.
    fox = party.say(party.bob, "/imagine a red fox")
    owl = party.say(party.cy, "/imagine a snowy owl")
    fox_photo, owl_photo = await party.result(fox), await party.result(owl)
    assert fox_photo["caption"].startswith("🎨 #1\n")
    assert owl_photo["caption"].startswith("🎨 #2\n")
    first_row = fox_photo["reply_markup"]["inline_keyboard"][0]
    assert [b["text"] for b in first_row] == ["❤️ 0", "🎨 Remix"]
    job_id = vote_data(fox_photo).partition(":")[2]
    assert [b["callback_data"] for b in first_row] == [f"vt:{job_id}", f"rx:{job_id}"]
    assert ("🔁 Reroll", f"rr:{job_id}") in [
        (b["text"], b["callback_data"]) for b in fox_photo["reply_markup"]["inline_keyboard"][1]
    ]

    # A remix: a reply to #1's image with /imagine; #1's result is its reference.
    remix = party.say(party.ann, "/imagine the same fox at night", reply_to=fox_photo)
    remix_photo = await party.result(remix)
    assert remix_photo["caption"].startswith("🎨 #3 · remix of #1 by Bob\n")
    create = party.sandbox.create_calls()[-1].json
    assert "the same fox at night" in json.dumps(create)
    remix_job = await party.core.sessions.entry_for_job(vote_data(remix_photo)[3:])
    assert remix_job is not None and remix_job.remix_of == 1
    assert remix_job.job.parent_job_id == job_id and len(remix_job.job.images) == 1

    # Votes: counted, then taken back; the count on the button follows.
    voted = await party.press(party.ann, fox_photo, f"vt:{job_id}")
    assert voted.params["text"] == "👍 Your vote for #1 counts (1 vote)."
    assert not voted.params.get("show_alert")
    await until(lambda: vote_label(fake, fox_photo) == "❤️ 1")
    edit = await fake.wait_for("editMessageReplyMarkup")
    assert edit.params["message_id"] == fox_photo["message_id"]
    assert "📎 Original" in json.dumps(edit.params["reply_markup"], ensure_ascii=False)
    await party.press(party.dee, fox_photo, f"vt:{job_id}")
    await until(lambda: vote_label(fake, fox_photo) == "❤️ 2")
    back = await party.press(party.ann, fox_photo, f"vt:{job_id}")
    assert back.params["text"] == "Your vote for #1 is taken back (1 vote)."
    await until(lambda: vote_label(fake, fox_photo) == "❤️ 1")
    own = await party.press(party.bob, fox_photo, f"vt:{job_id}")
    assert own.params["text"] == "You can't vote for your own entry."
    assert own.params["show_alert"] is True
    await party.press(party.bob, owl_photo, vote_data(owl_photo))
    await party.press(party.dee, owl_photo, vote_data(owl_photo))

    # Remix, pressed: how to remix, to the presser only.
    how = await party.press(party.dee, owl_photo, "rx:" + vote_data(owl_photo)[3:])
    assert how.params["text"] == "🎨 To remix #2, reply to its image with /imagine and your prompt."
    assert how.params["show_alert"] is True

    # /session shows how it stands; /history marks entries; the card keeps up.
    shown = await party.answer(party.say(party.dee, "/session"))
    assert shown.startswith(f"🎨 Session: “{THEME}”")
    assert "3 entries by 3 people · 3 votes" in shown
    history = await party.answer(party.say(party.bob, "/history"))
    assert f"🎨 #1 in “{THEME}”" in history
    await until(lambda: "3 entries by 3 people" in fake.messages[(GROUP_ID, card_id)]["text"])

    # The end, by the starter: the recap album, then the figures.
    since = len(fake.calls)
    ended = await party.answer(party.say(party.ann, "/session end"))
    assert ended.startswith(f"🏁 The session “{THEME}” has ended.")
    album = await fake.wait_for("sendMediaGroup", since=since, timeout=10)
    captions = [item["caption"] for item in album.params["media"]]
    assert captions[0].startswith("#2 by Cy: “a snowy owl” · 2 votes")
    assert captions[1].startswith("#1 by Bob: “a red fox” · 1 vote")
    assert captions[2] == "#3 by Ann: “the same fox at night” · 0 votes · remix of #1 by Bob"
    assert [item["type"] for item in album.params["media"]] == ["photo"] * 3
    figures = await fake.wait_for(
        "sendMessage", lambda c: "is over!" in str(c.params["text"]), since=since
    )
    recap = str(figures.params["text"]).splitlines()
    assert recap[0] == f"🏁 The session “{THEME}” is over!"
    assert recap[1] == "3 entries by 3 people, $0.12 spent."
    assert recap[-1].startswith("Set PUBLIC_BASE_URL to get a gallery link")
    assert figures.time > album.time
    # The card says it ended, and is unpinned.
    await until(lambda: "🏁 Ended at" in fake.messages[(GROUP_ID, card_id)]["text"])
    await until(lambda: fake.pinned[GROUP_ID] == [])

    # After the end: a vote is refused in words, and /imagine is no entry.
    late = await party.press(party.dee, fox_photo, f"vt:{job_id}")
    assert late.params["text"] == f"That session (“{THEME}”) has ended."
    after = await party.result(party.say(party.bob, "/imagine a fox, later"))
    assert not after["caption"].startswith("🎨")
    assert after["reply_markup"]["inline_keyboard"][0][0]["text"] == "🔁 Reroll"


async def test_a_hundred_people_vote_at_once(party: Party) -> None:
    fake = party.fake
    await start(party)
    photo = await party.result(party.say(party.bob, "/imagine a red fox"))
    data = vote_data(photo)
    voters = [fake.user(1000 + i, f"Voter {i}") for i in range(100)]
    shown = fake.messages[(GROUP_ID, photo["message_id"])]
    since = len(fake.calls)
    queries = {fake.press_button(party.group, voter, shown, data) for voter in voters}

    await fake.wait_for("answerCallbackQuery", since=since, n=100, timeout=30)
    answered = [c for c in fake.calls[since:] if c.method == "answerCallbackQuery"]
    assert {c.params["callback_query_id"] for c in answered} == queries
    assert all(c.ok and str(c.params["text"]).startswith("👍 Your vote") for c in answered)
    entry = await party.core.sessions.entry_for_job(data[3:])
    assert entry is not None and entry.votes == 100
    await until(lambda: vote_label(fake, photo) == "❤️ 100", timeout=15)
    # Coalesced: a burst of presses is a few edits, not a hundred.
    edits = [c for c in fake.calls[since:] if c.method == "editMessageReplyMarkup"]
    assert 1 <= len(edits) <= 5
    assert all(c.ok for c in edits)


async def test_the_end_by_timer_after_a_restart(open_party: OpenParty) -> None:
    async with open_party() as party:
        fake = party.fake
        card = await start(party, "Night owls --for 2m --per-person 1")
        assert "Rules: 1 entry per person." in str(card.params["text"])
        owl = await party.result(party.say(party.bob, "/imagine an owl"))
        await party.press(party.cy, owl, vote_data(owl))
        await until(lambda: vote_label(fake, owl) == "❤️ 1")
        second = party.say(party.bob, "/imagine another owl")
        assert await party.answer(second) == "You have made 1 entry, this session's limit."
    card_id = card.result["message_id"]

    # A new process on the same database: the card, the votes and the timer go on.
    async with open_party() as party:
        fake = party.fake
        since = len(fake.calls)
        await party.press(party.dee, owl, vote_data(owl))
        await until(lambda: vote_label(fake, owl) == "❤️ 2")
        assert "2 votes" in (await party.answer(party.say(party.cy, "/session")))
        party.clock.advance(120)
        party.core.session_keeper.wake()
        # One entry: its recap is one photo with its credit, then the figures.
        photo = await fake.wait_for(
            "sendPhoto", lambda c: "reply_parameters" not in c.params, since=since, timeout=10
        )
        assert photo.params["caption"] == "#1 by Bob: “an owl” · 2 votes"
        figures = await fake.wait_for(
            "sendMessage", lambda c: "is over!" in str(c.params["text"]), since=since
        )
        assert "1 entry by 1 person, $0.04 spent." in str(figures.params["text"])
        await until(lambda: "🏁 Ended at" in fake.messages[(GROUP_ID, card_id)]["text"])
        # The card was edited in place, never posted again; the recap went once.
        assert [c for c in fake.calls[since:] if c.method == "sendMessage" and is_card(c)] == []
        await asyncio.sleep(0.5)
        party.core.session_keeper.wake()
        await asyncio.sleep(0.5)
        assert len([c for c in fake.calls[since:] if c.method == "sendPhoto"]) == 1
        late = await party.press(party.ann, owl, vote_data(owl))
        assert late.params["text"] == "That session (“Night owls”) has ended."


# -- refusals, in words, costing nothing ----------------------------------------------------


async def test_bad_input_is_refused_in_words(party: Party) -> None:
    async def said(user: JSONDict, text: str) -> str:
        return await party.answer(party.say(user, text))

    nothing = "There is no session running here. Start one with /session start <theme>."
    assert await said(party.dee, "/session") == nothing
    assert await said(party.ann, "/session end") == nothing
    assert await said(party.dee, "/session gallery") == nothing
    assert await said(party.bob, f"/session start {THEME}") == (
        "Only this chat's admins can start a session here. "
        "An admin can let everyone: /settings session_starters everyone."
    )
    assert await said(party.ann, "/session start") == (
        "Give the session a theme: /session start <theme> [--for 30m] [--budget 5] "
        "[--per-person 5] [--video on|off]"
    )
    assert await said(party.ann, "/session start Owls --for 30s") == (
        "A session lasts at least 1 minute."
    )
    assert await said(party.ann, "/session start Owls --for 8d") == (
        "A session lasts at most 7 days."
    )
    assert await said(party.ann, "/session start Owls --colour red") == (
        "There is no option “--colour”. Options: --for, --budget, --per-person, --video."
    )
    assert await said(party.dee, "/session dance") == (
        "🎨 Creative sessions:\n"
        "/session start <theme> [--for 30m] [--budget 5] [--per-person 5] [--video on|off]"
        " – start one here\n"
        "/session – how the one here stands\n"
        "/session end – end it (whoever started it, or an admin)\n"
        "/session gallery – the link to its gallery"
    )
    assert party.fake.sent("pinChatMessage") == []

    await start(party, f"{THEME} --budget 0.05 --video off")
    assert await said(party.ann, "/session start Owls") == (
        f"There is already a session here: “{THEME}”, until 12:30 UTC."
    )
    assert await said(party.bob, "/session end") == (
        "Only the person who started the session or an admin can end it."
    )
    assert await said(party.bob, "/video waves on a beach") == "Videos are off in this session."
    await party.result(party.say(party.bob, "/imagine a red fox"))
    made = len(party.sandbox.create_calls())
    assert await said(party.cy, "/imagine a snowy owl") == (
        "This session's budget ($0.05) is spent. $0.01 is left, and this image costs about $0.04."
    )
    assert len(party.sandbox.create_calls()) == made  # nothing sent, nothing spent


async def test_a_card_the_bot_may_not_pin(
    open_party: OpenParty, log_records: pytest.LogCaptureFixture
) -> None:
    async with open_party(bot_admin=False) as party:
        card = await start(party)
        refused = await party.fake.wait_for("pinChatMessage", ok=False)
        assert refused.status == 400 and party.fake.pinned == {}
        party.say(party.ann, "/session end")
        await party.fake.wait_for(
            "sendMessage", lambda c: str(c.params["text"]).startswith("🏁 The session “")
        )
        # Told nobody: only the card and the end's answers are in the chat.
        texts = [str(c.params["text"]) for c in party.fake.sent("sendMessage")]
        assert not any("pin" in t.lower() for t in texts)
    assert any(
        f"card {card.result['message_id']} not pinned" in r.getMessage()
        for r in log_records.records
        if r.levelno == logging.INFO
    )


async def test_the_gallery_link_and_a_refused_album(open_party: OpenParty) -> None:
    async with open_party(public_base_url="https://genrelay.example") as party:
        await start(party)
        await party.result(party.say(party.bob, "/imagine a red fox"))
        await party.result(party.say(party.cy, "/imagine a snowy owl"))
        figures = await party.core.sessions.current(HERE)
        assert figures is not None
        link = f"https://genrelay.example/sessions/{figures.session.gallery_key}"
        gallery = await party.answer(party.say(party.dee, "/session gallery"))
        assert gallery == f"🖼 Every entry of “{THEME}”: {link}"
        # Telegram will not take the album: the credits go in words.
        party.fake.fail_next("sendMediaGroup", status=400, description="Bad Request: nope")
        since = len(party.fake.calls)
        party.say(party.ann, "/session end")
        figures = await party.fake.wait_for(
            "sendMessage", lambda c: "is over!" in str(c.params["text"]), since=since, timeout=10
        )
        text = str(figures.params["text"])
        assert "#1 by Bob: “a red fox” · 0 votes" in text
        assert "#2 by Cy: “a snowy owl” · 0 votes" in text
        assert text.endswith(link)
        # The gallery of the session that ended, again.
        again = await party.answer(party.say(party.dee, "/session gallery"))
        assert again == f"🖼 Every entry of “{THEME}”: {link}"


async def test_help_and_the_command_list_name_sessions(party: Party) -> None:
    helped = await party.answer(party.say(party.dee, "/help"))
    assert (
        "/session start <theme> – a creative session: every /imagine and /video here is an "
        "entry, everyone votes with ❤️, and replying to an entry with /imagine <prompt> "
        "remixes it (/session shows it, /session end ends it, /session gallery links its "
        "gallery)"
    ) in helped
    commands = party.fake.commands[(json.dumps({"type": "default"}), "")]
    assert {"command": "session", "description": "A creative session: /session start <theme>"} in (
        commands
    )
    assert JobAction.VOTE == "vt" and JobAction.REMIX == "rx"


async def test_a_session_in_a_forum_topic_with_a_video(party: Party) -> None:
    fake = party.fake
    forum = fake.group(FORUM_ID, "Art forum", is_forum=True)
    fake.chat_admins[FORUM_ID] = {ANN}  # the bot is no admin here: its card is not pinned
    topic = 77
    since = len(fake.calls)
    fake.send_text(forum, party.ann, "/session start Waves --for 10m", thread_id=topic)
    card = await party.card(since=since)
    assert card.chat_id == FORUM_ID and card.params["message_thread_id"] == topic
    asked = fake.send_text(forum, party.bob, "/video waves at dusk", thread_id=topic)
    video = await fake.wait_for("sendVideo", answers(asked), timeout=15)
    assert video.params["caption"].startswith("🎨 #1\n")
    rows = video.params["reply_markup"]["inline_keyboard"]
    assert [b["text"] for b in rows[0]] == ["❤️ 0"]  # no Remix under a video
    # Another topic of the same forum has no session.
    elsewhere = fake.send_text(forum, party.cy, "/session", thread_id=78)
    call = await fake.wait_for("sendMessage", answers(elsewhere))
    assert call.params["text"].startswith("There is no session running here.")
    since = len(fake.calls)
    fake.send_text(forum, party.ann, "/session end", thread_id=topic)
    recap = await fake.wait_for(
        "sendVideo", lambda c: "reply_parameters" not in c.params, since=since, timeout=10
    )
    assert recap.params["message_thread_id"] == topic
    assert recap.params["caption"] == "#1 by Bob: “waves at dusk” · 0 votes"


# -- the buttons, as values ------------------------------------------------------------------


def test_an_entrys_buttons_and_its_count() -> None:
    image = Job(id="abcd2345ef", kind=Kind.IMAGE, model="nanobanana", prompt="a fox", origin=HERE)
    image.state = JobState.SUCCEEDED
    video = dataclasses.replace(image, id="vvvv2345ef", kind=Kind.VIDEO, model="veo_fast")
    below = InlineKeyboardMarkup([[InlineKeyboardButton("🔁 Reroll", callback_data="rr:x")]])

    markup = entry_buttons(below, image, 4)
    assert [[(b.text, b.callback_data) for b in row] for row in markup.inline_keyboard] == [
        [("❤️ 4", "vt:abcd2345ef"), ("🎨 Remix", "rx:abcd2345ef")],
        [("🔁 Reroll", "rr:x")],
    ]
    assert [b.text for b in entry_buttons(None, video, 0).inline_keyboard[0]] == ["❤️ 0"]
    assert voted_job(markup) == "abcd2345ef"
    assert voted_job(below) is None and voted_job(None) is None
    counted = with_votes(markup, "abcd2345ef", 5)
    assert counted.inline_keyboard[0][0].text == "❤️ 5"
    assert counted.inline_keyboard[0][1:] == markup.inline_keyboard[0][1:]
    assert counted.inline_keyboard[1:] == markup.inline_keyboard[1:]
    assert with_votes(markup, "someoneelse", 9) == markup  # another entry's button: untouched
