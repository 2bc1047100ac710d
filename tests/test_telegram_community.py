"""Shared chats on Telegram, end to end: the real python-telegram-bot client inside
TelegramAdapter against FakeTelegram, the sandbox as the gateway, and a real core with its
community rules. Limits, budgets and refunds, fair turns, Confirm / Cancel, /cancel, blocked
words, chat settings by admins only (kept over a restart), /history with Send again, /usage,
and two requests racing for the last slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr
from telegram.ext import AIORateLimiter

from adapters.telegram import TelegramAdapter
from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Delivery, Job, JobState
from sandbox import SandboxGateway
from tests.conftest import running
from tests.fakes.telegram_api import Call, FakeTelegram
from tests.test_telegram import GROUP_ID, TOKEN, buttons, replied_to, wait_for_value

JSONDict = dict[str, Any]

ANN, BOB, CY, DEE = 42, 43, 44, 45
# 12:00:30 UTC: the daily limits reset "in 11 h 59 min" for the next thirty seconds.
NOON = 1_800_000_000 - 1_800_000_000 % 86400 + 12 * 3600 + 30
RESET = "at 00:00 UTC (in 11 h 59 min)"
CANCELLED = "Cancelled. Nothing was sent, so nothing was charged."
IN_LINE = "⏳ In line for Nano Banana: {} in this chat. It starts when a slot frees up."


def mention(user_id: int, name: str) -> str:
    return f'<a href="tg://user?id={user_id}">{name}</a>'


class ShiftedClock:
    """Real time, starting at NOON, plus whatever a test adds with `advance`."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        return NOON + time.monotonic() - self._start + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class Room:
    """A group with an admin (Ann), a member (Bob) and its creator (Cy)."""

    fake: FakeTelegram
    sandbox: SandboxGateway
    core: Core
    clock: ShiftedClock
    group: JSONDict
    ann: JSONDict
    bob: JSONDict
    cy: JSONDict
    dee: JSONDict

    def say(self, user: JSONDict, text: str, chat: JSONDict | None = None) -> JSONDict:
        return self.fake.send_text(chat or self.group, user, text)

    async def reply(
        self, message: JSONDict, where: Callable[[Call], bool] | None = None, n: int = 1
    ) -> Call:
        """The n-th sendMessage replying to `message` (and matching `where`)."""
        chat_id = message["chat"]["id"]

        def match(c: Call) -> bool:
            return (
                str(c.chat_id) == str(chat_id)
                and "reply_parameters" in c.params
                and replied_to(c) == message["message_id"]
                and (where is None or where(c))
            )

        return await self.fake.wait_for("sendMessage", match, n=n)

    async def answer(self, message: JSONDict) -> str:
        """The text of the one reply to `message` (a command answered in words)."""
        return str((await self.reply(message)).params["text"])

    async def job_for(self, message: JSONDict) -> Job:
        key = str(message["message_id"])
        return await wait_for_value(
            lambda: self.core.store.recent(50, platform="telegram"),
            lambda jobs: next((j for j in jobs if j.origin.message_id == key and _taken(j)), None),
            5,
        )

    async def delivered(self, message: JSONDict) -> Job:
        job_id = (await self.job_for(message)).id

        async def get() -> list[Job]:
            job = await self.core.store.get(job_id)
            return [job] if job else []

        return await wait_for_value(
            get,
            lambda jobs: (
                jobs[0]
                if jobs[0].delivery in (Delivery.DELIVERED, Delivery.UNDELIVERABLE)
                else None
            ),
            8,
        )

    async def press(
        self, user: JSONDict, message_id: int, data: str, *, stale: JSONDict | None = None
    ) -> Call:
        """Press a button of one of our messages; returns the answerCallbackQuery call.
        `stale`: the message as the user still sees it (deleted meanwhile)."""
        shown = stale or self.fake.messages[(GROUP_ID, message_id)]
        query_id = self.fake.press_button(self.group, user, shown, data)
        return await self.fake.wait_for(
            "answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id
        )

    def prompts(self) -> list[str]:
        """What reached the gateway, in order."""
        out = []
        for call in self.sandbox.create_calls():
            body = call.json
            prompt = body.get("prompt") or body["messages"][-1]["content"]
            out.append(prompt if isinstance(prompt, str) else str(prompt))
        return out

    async def gateway_has(self, count: int) -> list[str]:
        """Until `count` tasks were created upstream; their ids, oldest first."""
        async with asyncio.timeout(5):
            while len(self.sandbox.tasks) < count:
                await asyncio.sleep(0.01)
        return list(self.sandbox.tasks)


def _taken(job: Job) -> bool:
    """Not a request refused outright (those are recorded, never delivered)."""
    return job.state is not JobState.REJECTED or job.delivery is not Delivery.NONE


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


OpenRoom = Callable[..., AbstractAsyncContextManager[Room]]


@pytest.fixture
def open_room(
    fake: FakeTelegram, sandbox: SandboxGateway, make_settings: Callable[..., Settings]
) -> OpenRoom:
    clock = ShiftedClock()  # one per test: a restart keeps the day

    @asynccontextmanager
    async def opener(**overrides: Any) -> AsyncIterator[Room]:
        # These tests read each job's own status line: no board (tests/test_status_board.py).
        overrides.setdefault("telegram_status_board_after", 100)
        settings = make_settings(
            aa_base_url=sandbox.base_url,
            telegram_bot_token=SecretStr(fake.token),
            telegram_api_base_url=fake.api_base,
            telegram_file_base_url=fake.file_base,
            **overrides,
        )
        limiter = AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=1)
        fake.chat_admins[GROUP_ID] = {ANN}
        fake.chat_creators[GROUP_ID] = CY
        async with (
            open_core(settings, clock=clock) as core,
            running(core),
            TelegramAdapter(
                core, settings, poll_timeout_s=1.0, rate_limiter=limiter, board_interval_s=0.0
            ),
        ):
            yield Room(
                fake=fake,
                sandbox=sandbox,
                core=core,
                clock=clock,
                group=fake.group(GROUP_ID, "Art club"),
                ann=fake.user(ANN, "Ann", "ann"),
                bob=fake.user(BOB, "Bob", "bob"),
                cy=fake.user(CY, "Cy", "cy"),
                dee=fake.user(DEE, "Dee"),
            )

    return opener


# -- limits and budgets ------------------------------------------------------------------------


async def test_over_the_concurrent_and_daily_limits_says_when_to_retry(
    open_room: OpenRoom,
) -> None:
    async with open_room(user_concurrent_jobs=1, user_daily_images=2) as room:
        room.sandbox.script_next(duration=60)  # until the test finishes it
        first = room.say(room.ann, "/imagine a first fox")
        [task] = await room.gateway_has(1)

        second = room.say(room.ann, "/imagine a second fox")
        assert await room.answer(second) == (
            "You have 1 job going already, the most at once here. "
            "Try again when one of them finishes."
        )
        room.sandbox.finish(task)
        await room.delivered(first)
        third = room.say(room.ann, "/imagine a third fox")
        await room.delivered(third)

        fourth = room.say(room.ann, "/imagine a fourth fox")
        assert await room.answer(fourth) == (
            f"You've made 2 images today, the most allowed here. You can go again {RESET}."
        )
        bobs = room.say(room.bob, "/imagine a fox of his own")  # limits are per person
        await room.delivered(bobs)

        assert room.prompts() == ["a first fox", "a third fox", "a fox of his own"]
        for refused in (second, fourth):  # a plain reply: no status line, no buttons
            [call] = [
                c for c in room.fake.sent("sendMessage") if replied_to(c) == refused["message_id"]
            ]
            assert "reply_markup" not in call.params
        edited = {c.params["message_id"] for c in room.fake.sent("editMessageText")}
        assert not edited & {second["message_id"], fourth["message_id"]}


async def test_chat_budget_refuses_until_a_refund_frees_it(open_room: OpenRoom) -> None:
    async with open_room(chat_daily_budget_usd=0.30) as room:
        room.sandbox.script_next(outcome="refunded", duration=60)
        storm = room.say(room.ann, "/video a storm at sea")  # Veo 3.1 Fast, about $0.25
        [task] = await room.gateway_has(1)

        calm = room.say(room.bob, "/video a calm sea")
        assert await room.answer(calm) == (
            "This chat has used $0.25 of its $0.30 budget for today, and this video costs "
            f"about $0.25. The budget resets {RESET}."
        )
        room.sandbox.finish(task, "refunded")
        refunded = await room.delivered(storm)
        assert refunded.state is JobState.REFUNDED
        notice = await room.reply(storm, lambda c: "❌" in c.params["text"])
        assert notice.params["text"].startswith("❌ Veo 3.1 Fast could not make this video")
        assert "$0.25 was refunded." in notice.params["text"]

        again = room.say(room.bob, "/video a calm sea")  # the refund gave the budget back
        done = await room.delivered(again)
        assert done.state is JobState.SUCCEEDED
        video = await room.fake.wait_for("sendVideo")
        assert replied_to(video) == again["message_id"]
        assert room.prompts() == ["a storm at sea", "a calm sea"]


async def test_two_requests_for_the_last_slot_admit_exactly_one(open_room: OpenRoom) -> None:
    async with open_room(chat_daily_budget_usd=0.04) as room:  # one Nano Banana image
        # Both are in the same getUpdates batch and handled at the same time.
        asks = [room.say(room.ann, "/imagine a lighthouse"), room.say(room.bob, "/imagine a pier")]
        first_replies = [await room.reply(ask) for ask in asks]

        texts = sorted(str(c.params["text"]) for c in first_replies)
        assert texts == [
            "This chat has used $0.04 of its $0.04 budget for today, and this image costs "
            f"about $0.04. The budget resets {RESET}.",
            "⏳ Queued on Nano Banana…",
        ]
        [winner] = [a for a, c in zip(asks, first_replies, strict=True) if "⏳" in c.params["text"]]
        await room.delivered(winner)
        assert room.prompts() == [winner["text"].removeprefix("/imagine ")]
        assert len(room.fake.sent("sendPhoto")) == 1


# -- fair turns --------------------------------------------------------------------------------


async def test_a_saturated_chat_alternates_between_people(open_room: OpenRoom) -> None:
    async with open_room(chat_concurrent_jobs=1, user_concurrent_jobs=5) as room:
        room.sandbox.script_next(duration=60)
        ann1 = room.say(room.ann, "/imagine ann one")
        [task] = await room.gateway_has(1)  # the chat's one slot is taken

        statuses: dict[str, Call] = {}
        for user, prompt, place in [
            (room.ann, "ann two", "1st"),
            (room.ann, "ann three", "2nd"),
            (room.bob, "bob one", "1st"),  # Bob has had no turn yet: he goes next
        ]:
            ask = room.say(user, f"/imagine {prompt}")
            status = await room.reply(ask)
            job = await room.job_for(ask)
            assert status.params["text"] == IN_LINE.format(place)
            assert buttons(status) == [("✖️ Cancel", f"cx:{job.id}")]
            statuses[prompt] = status

        room.sandbox.finish(task)
        await room.delivered(ann1)
        # As the line moves, the last one's status line says so, still with its Cancel button.
        last = statuses["ann three"].result["message_id"]
        moved = await room.fake.wait_for(
            "editMessageText",
            lambda c: c.params["message_id"] == last and c.params["text"] == IN_LINE.format("1st"),
        )
        assert [t for t, _ in buttons(moved)] == ["✖️ Cancel"]
        await room.fake.wait_for("sendPhoto", n=4, timeout=8)

        assert room.prompts() == ["ann one", "bob one", "ann two", "ann three"]
        # Once sent, a job's status line moves on and loses its Cancel button.
        sent_on = await room.fake.wait_for(
            "editMessageText",
            lambda c: c.params["message_id"] == last and "In line" not in c.params["text"],
        )
        assert "reply_markup" not in sent_on.params


async def test_places_move_when_someone_joins_or_leaves_the_line(open_room: OpenRoom) -> None:
    async with open_room(chat_concurrent_jobs=1, user_concurrent_jobs=5) as room:
        room.sandbox.script_next(duration=60)
        room.say(room.ann, "/imagine ann one")
        [task] = await room.gateway_has(1)
        two = (await room.reply(room.say(room.ann, "/imagine ann two"))).result["message_id"]
        three = (await room.reply(room.say(room.ann, "/imagine ann three"))).result["message_id"]

        async def shows(message_id: int, place: str) -> None:
            await room.fake.wait_for(
                "editMessageText",
                lambda c: (
                    c.params["message_id"] == message_id
                    and c.params["text"] == IN_LINE.format(place)
                ),
            )

        # Bob has had no turn yet: he goes in front, and Ann's waiting jobs say they moved.
        bob = room.say(room.bob, "/imagine bob one")
        assert (await room.reply(bob)).params["text"] == IN_LINE.format("1st")
        await shows(two, "2nd")
        await shows(three, "3rd")
        # He changes his mind: Ann's jobs move up again.
        assert await room.answer(room.say(room.bob, "/cancel")) == CANCELLED
        await shows(two, "1st")
        await shows(three, "2nd")

        room.sandbox.finish(task)
        await room.fake.wait_for("sendPhoto", n=3, timeout=8)
        assert room.prompts() == ["ann one", "ann two", "ann three"]


# -- a busy group's status board --------------------------------------------------------------


async def test_a_busy_group_gets_one_status_board_not_a_line_per_job(open_room: OpenRoom) -> None:
    # Five people ask at once in a group that runs three jobs at a time. The first two
    # get status lines; from the third on, one board lists the jobs, edited in place.
    async with open_room(
        chat_concurrent_jobs=3, user_concurrent_jobs=5, telegram_status_board_after=2
    ) as room:
        fake, sandbox = room.fake, room.sandbox
        for _ in range(5):
            sandbox.script_next(duration=60)

        async def board(where: Callable[[str], bool]) -> Call:
            def match(c: Call) -> bool:
                text = str(c.params.get("text", ""))
                return text.startswith("📋") and where(text)

            return await _board_call(fake, match)

        asks: list[JSONDict] = []
        for user in (room.ann, room.bob):
            ask = room.say(user, f"/imagine {user['first_name']} one")
            await room.reply(ask)  # a status line of its own
            asks.append(ask)
        for user, who, n in ((room.cy, "Cy", 1), (room.dee, "Dee", 2), (room.ann, "Ann", 3)):
            ask = room.say(user, f"/imagine {who} again")
            await board(lambda t, who=who, n=n: f"\n{n}. {who}: " in t)
            asks.append(ask)

        shown = await board(lambda t: t.count("\n") == 3 and "2nd in this chat" in t)
        ann_two = await room.job_for(asks[4])
        dee = await room.job_for(asks[3])
        assert shown.params["text"].startswith("📋 Working on 3 requests in this chat:\n1. Cy: ")
        assert "\n2. Dee: ⏳ In line for Nano Banana: 1st in this chat." in shown.params["text"]
        assert "\n3. Ann: ⏳ In line for Nano Banana: 2nd in this chat." in shown.params["text"]
        assert buttons(shown) == [
            ("✖️ Cancel #2", f"cx:{dee.id}"),
            ("✖️ Cancel #3", f"cx:{ann_two.id}"),
        ]
        [posted] = [c for c in fake.sent("sendMessage") if c.params["text"].startswith("📋")]
        board_id = posted.result["message_id"]
        assert "reply_parameters" not in posted.params  # it answers nobody in particular
        # No status line of their own for the jobs on the board.
        for ask in asks[2:]:
            assert not [
                c
                for c in fake.sent("sendMessage")
                if "reply_parameters" in c.params and replied_to(c) == ask["message_id"]
            ]

        # Ann takes her waiting one back from the board; it leaves the board.
        answer = await room.press(room.ann, board_id, f"cx:{ann_two.id}")
        assert answer.params["text"] == CANCELLED
        await board(lambda t: t.startswith("📋 Working on 2 requests") and "Ann" not in t)

        for task in await room.gateway_has(3):
            sandbox.finish(task)
        for task in (await room.gateway_has(4))[3:]:
            sandbox.finish(task)
        for ask in asks[:4]:
            assert (await room.delivered(ask)).state is JobState.SUCCEEDED
        deleted = await fake.wait_for(
            "deleteMessage", lambda c: c.params["message_id"] == board_id, timeout=8
        )
        assert deleted.ok and (GROUP_ID, board_id) not in fake.messages
        # One board, two status lines: three status messages for five jobs.
        sent = [
            c for c in fake.sent("sendMessage") if c.params["text"].startswith(("⏳", "🎨", "📋"))
        ]
        assert len(sent) == 3
        assert all(
            c.params["message_id"] == board_id
            for c in fake.sent("editMessageText")
            if c.params["text"].startswith("📋")
        )


async def _board_call(fake: FakeTelegram, match: Callable[[Call], bool]) -> Call:
    """The first board message or edit that matches."""
    async with asyncio.timeout(8):
        while True:
            for call in fake.calls:
                if call.method in ("sendMessage", "editMessageText") and call.ok and match(call):
                    return call
            await asyncio.sleep(0.02)


# -- confirmation ------------------------------------------------------------------------------


async def test_a_video_is_sent_only_after_its_askers_confirm(open_room: OpenRoom) -> None:
    async with open_room(video_needs_confirmation=True) as room:
        fake = room.fake
        ask = room.say(room.ann, "/video a paper boat --model veo")
        prompt = await room.reply(ask)
        job = await room.job_for(ask)
        prompt_id = prompt.result["message_id"]
        assert prompt.params["text"] == (
            "🎬 Veo 3.1 video for “a paper boat”: about $0.50, usually ready in ~2 min. "
            "Press Confirm to start (only the asker can). This expires in 5 min."
        )
        assert buttons(prompt) == [("✅ Confirm", f"cf:{job.id}"), ("✖️ Cancel", f"cx:{job.id}")]

        for data, refusal in [
            (f"cf:{job.id}", "Only the person who asked can confirm this."),
            (f"cx:{job.id}", "Only the person who asked can cancel it."),
        ]:
            answer = await room.press(room.bob, prompt_id, data)
            assert answer.params["text"] == refusal
            assert answer.params["show_alert"] is True
        held = await room.core.store.get(job.id)
        assert held is not None and held.hold == "confirm" and held.state is JobState.RECEIVED
        assert held.status_message_id == str(prompt_id)
        assert room.sandbox.create_calls() == []

        since = len(fake.calls)
        answer = await room.press(room.ann, prompt_id, f"cf:{job.id}")
        assert answer.params["text"] == "✅ Confirmed."
        started = await fake.wait_for(
            "editMessageText", lambda c: c.params["message_id"] == prompt_id, since=since
        )
        assert started.params["text"] == "⏳ Queued on Veo 3.1…"
        assert "reply_markup" not in started.params  # no Confirm, no Cancel: it is going
        done = await room.delivered(ask)
        assert done.state is JobState.SUCCEEDED
        video = await fake.wait_for("sendVideo")
        assert replied_to(video) == ask["message_id"]
        assert (GROUP_ID, prompt_id) not in fake.messages  # the prompt was its status line
        assert room.prompts() == ["a paper boat"]

        # The asker can also say no: nothing is sent, and the notice says it cost nothing.
        other = room.say(room.ann, "/video a second boat")
        second = await room.reply(other)
        other_job = await room.job_for(other)
        answer = await room.press(room.ann, second.result["message_id"], f"cx:{other_job.id}")
        assert answer.params["text"] == CANCELLED
        notice = await room.reply(other, lambda c: "🚫" in c.params["text"])
        assert notice.params["text"] == f"🚫 {CANCELLED}\n{mention(ANN, 'Ann')}"
        await room.delivered(other)
        assert (GROUP_ID, second.result["message_id"]) not in fake.messages
        assert room.prompts() == ["a paper boat"]


async def test_a_confirm_prompt_still_works_after_a_restart(open_room: OpenRoom) -> None:
    async with open_room(video_needs_confirmation=True) as room:
        ask = room.say(room.ann, "/video a night train")
        prompt = await room.reply(ask)
        job = await room.job_for(ask)
    prompt_id = prompt.result["message_id"]

    async with open_room(video_needs_confirmation=True) as again:
        since = len(again.fake.calls)
        answer = await again.press(again.ann, prompt_id, f"cf:{job.id}")
        assert answer.params["text"] == "✅ Confirmed."
        started = await again.fake.wait_for(
            "editMessageText", lambda c: c.params["message_id"] == prompt_id, since=since
        )
        assert started.params["text"] == "⏳ Queued on Veo 3.1 Fast…"
        assert (await again.delivered(ask)).state is JobState.SUCCEEDED
        video = await again.fake.wait_for("sendVideo")
        assert replied_to(video) == ask["message_id"]
        assert (GROUP_ID, prompt_id) not in again.fake.messages
        assert len(again.fake.sent("sendMessage")) == 1  # the prompt became the status line
        assert again.prompts() == ["a night train"]


async def test_an_unconfirmed_video_expires(open_room: OpenRoom) -> None:
    async with open_room(video_needs_confirmation=True) as room:
        ask = room.say(room.bob, "/video a slow sunrise")
        prompt = await room.reply(ask)
        job = await room.job_for(ask)
        shown = room.fake.messages[(GROUP_ID, prompt.result["message_id"])]

        room.clock.advance(301)
        assert await room.core.service.expire_holds() == 1  # the core's sweep, driven now
        room.core.notifier.wake()
        notice = await room.reply(ask, lambda c: "🚫" in c.params["text"])
        assert notice.params["text"] == (
            "🚫 Nobody confirmed this within 5 minutes, so it was not sent. Nothing was charged."
            f"\n{mention(BOB, 'Bob')}"
        )
        assert "reply_markup" not in notice.params
        expired = await room.delivered(ask)
        assert (expired.state, expired.error_code) == (JobState.REJECTED, "confirm_expired")
        assert (GROUP_ID, prompt.result["message_id"]) not in room.fake.messages

        late = await room.press(room.bob, 0, f"cf:{job.id}", stale=shown)
        assert late.params["text"] == "This request is no longer waiting for confirmation."
        assert room.sandbox.create_calls() == []


async def test_animate_in_a_confirming_chat_asks_first(open_room: OpenRoom) -> None:
    async with open_room(video_needs_confirmation=True) as room:
        ask = room.say(room.ann, "/imagine a paper crane")
        photo = await room.fake.wait_for("sendPhoto", timeout=8)
        parent = await room.delivered(ask)

        answer = await room.press(room.bob, photo.result["message_id"], f"an:{parent.id}")
        assert answer.params["text"] == (
            "🎬 Animating with Veo 3.1 Fast… Press Confirm under my reply to start it."
        )
        prompt = await room.fake.wait_for(
            "sendMessage", lambda c: replied_to(c) == photo.result["message_id"]
        )
        assert prompt.params["text"].startswith("🎬 Veo 3.1 Fast video for “a paper crane”")
        assert [t for t, _ in buttons(prompt)] == ["✅ Confirm", "✖️ Cancel"]
        assert room.prompts() == ["a paper crane"]


# -- cancel ------------------------------------------------------------------------------------


async def test_cancel_button_and_cancel_command(open_room: OpenRoom) -> None:
    async with open_room(chat_concurrent_jobs=1, user_concurrent_jobs=5) as room:
        room.sandbox.script_next(duration=60)
        first = room.say(room.ann, "/imagine the first kite")
        [task] = await room.gateway_has(1)

        second = room.say(room.ann, "/imagine the second kite")
        status = await room.reply(second)
        job = await room.job_for(second)
        assert status.params["text"] == IN_LINE.format("1st")
        status_id = status.result["message_id"]

        refused = await room.press(room.bob, status_id, f"cx:{job.id}")
        assert refused.params["text"] == "Only the person who asked can cancel it."
        assert refused.params["show_alert"] is True
        answer = await room.press(room.ann, status_id, f"cx:{job.id}")
        assert answer.params["text"] == CANCELLED
        notice = await room.reply(second, lambda c: "🚫" in c.params["text"])
        assert notice.params["text"] == f"🚫 {CANCELLED}\n{mention(ANN, 'Ann')}"
        cancelled = await room.delivered(second)
        assert (cancelled.state, cancelled.error_code) == (JobState.REJECTED, "cancelled")
        assert (GROUP_ID, status_id) not in room.fake.messages

        third = room.say(room.ann, "/imagine the third kite")
        await room.reply(third)
        assert await room.answer(room.say(room.ann, "/cancel")) == CANCELLED
        await room.reply(third, lambda c: "🚫" in c.params["text"])
        assert await room.answer(room.say(room.ann, "/cancel")) == (
            "That job is already with Nano Banana and can't be stopped; "
            "I'll still post the result when it's ready."
        )
        room.sandbox.finish(task)
        assert (await room.delivered(first)).state is JobState.SUCCEEDED
        assert await room.answer(room.say(room.ann, "/cancel")) == (
            "You have nothing waiting or running here."
        )
        assert room.prompts() == ["the first kite"]


# -- settings ----------------------------------------------------------------------------------

SETTINGS_AFTER = """⚙️ Settings for this chat:
• image_model: nanobanana
• video_model: veo_fast
• allowed_models: nanobanana, veo_fast
• user_jobs_at_once: 2
• user_images_per_day: 50
• user_videos_per_day: 10
• chat_jobs_at_once: 3
• chat_budget_usd: $2.50
• video_confirm: on
• blocked_words: spoiler, gore
• session_starters: admins
Admins change one with /settings <name> <value>."""


async def test_settings_are_for_admins_and_survive_a_restart(open_room: OpenRoom) -> None:
    async with open_room(operator_ids=f"telegram:{DEE}") as room:
        say, answer = room.say, room.answer
        assert await answer(say(room.bob, "/settings blocked_words spoiler")) == (
            "Only this chat's admins can change its settings. Ask one of them."
        )
        assert await answer(say(room.ann, "/settings blocked_words spoiler, gore")) == (
            "✅ blocked_words: spoiler, gore"
        )
        assert await answer(say(room.cy, "/settings video_confirm on")) == "✅ video_confirm: on"
        assert await answer(say(room.ann, "/settings video_confirm maybe")) == (
            "video_confirm takes on or off."
        )
        unknown = await answer(say(room.ann, "/settings colour red"))
        assert unknown.startswith(
            "There is no setting “colour”. Settings: image_model, video_model,"
        )
        # An operator from the configuration may, though not a chat admin.
        assert await answer(say(room.dee, "/settings chat_budget_usd 2.5")) == (
            "✅ chat_budget_usd: $2.50"
        )
        assert await answer(say(room.ann, "/settings chat_jobs_at_once 99999999999999999999")) == (
            "chat_jobs_at_once takes a whole number from 1 to 100, e.g. chat_jobs_at_once 3."
        )
        assert await answer(say(room.ann, "/settings chat_budget_usd 0.001")) == (
            "chat_budget_usd takes an amount in USD from 0.01 to 100,000 with at most "
            "2 decimals, or 0 for no budget, e.g. chat_budget_usd 12.50."
        )
        # An anonymous admin posts as the group itself.
        anonymous = room.fake.user(1087968824, "Group", "GroupAnonymousBot")
        sent = room.fake.send_text(
            room.group, anonymous, "/settings user_jobs_at_once 1", sender_chat=room.group
        )
        assert await answer(sent) == "✅ user_jobs_at_once: 1"
        assert await answer(say(room.cy, "/settings user_jobs_at_once 2")) == (
            "✅ user_jobs_at_once: 2"
        )
        # Anyone can read one setting, with what it means.
        assert await answer(say(room.bob, "/settings video_confirm")) == (
            "⚙️ video_confirm: on — videos need the asker's Confirm (on/off).\n"
            "Admins change it with /settings video_confirm <value>."
        )
        # In a private chat, the user runs their own chat.
        private = room.fake.private_chat(room.bob)
        assert await answer(say(room.bob, "/settings video_confirm on", private)) == (
            "✅ video_confirm: on"
        )
        member_checks = {
            c.params["user_id"] for c in room.fake.sent("getChatMember") if c.chat_id == GROUP_ID
        }
        assert member_checks == {ANN, BOB, CY, DEE}

        blocked = say(room.bob, "/imagine the spoiler of the finale")
        assert await answer(blocked) == (
            "Your prompt contains “spoiler”, which this chat does not allow. Please rephrase it."
        )
        assert await answer(say(room.ann, "/settings allowed_models nanobanana, veo_fast")) == (
            "✅ allowed_models: nanobanana, veo_fast"
        )
        assert await answer(say(room.bob, "/imagine a cat --model nanobanana_pro")) == (
            "This chat doesn't allow Nano Banana Pro. Allowed here: nanobanana."
        )
        assert room.sandbox.create_calls() == []

    async with open_room(operator_ids=f"telegram:{DEE}") as again:
        assert await again.answer(again.say(again.bob, "/settings")) == SETTINGS_AFTER
        video = again.say(again.bob, "/video a red kite")
        prompt = await again.reply(video)
        assert prompt.params["text"].startswith("🎬 Veo 3.1 Fast video for “a red kite”")
        assert again.sandbox.create_calls() == []


async def test_a_chats_own_concurrency_setting_makes_jobs_wait(open_room: OpenRoom) -> None:
    async with open_room(user_concurrent_jobs=5) as room:
        assert await room.answer(room.say(room.ann, "/settings chat_jobs_at_once 1")) == (
            "✅ chat_jobs_at_once: 1"
        )
        room.sandbox.script_next(duration=60)
        first = room.say(room.ann, "/imagine the only one at a time")
        [task] = await room.gateway_has(1)
        waiting = room.say(room.bob, "/imagine my turn")
        status = await room.reply(waiting)
        room.sandbox.finish(task)
        for ask in (first, waiting):
            await room.delivered(ask)
        assert status.params["text"] == IN_LINE.format("1st")


# -- history and usage -------------------------------------------------------------------------


async def test_history_with_send_again(open_room: OpenRoom) -> None:
    async with open_room() as room:
        fake = room.fake
        lantern = room.say(room.ann, "/imagine a paper lantern")
        photo = await fake.wait_for("sendPhoto", timeout=8)
        made = await room.delivered(lantern)
        await room.delivered(room.say(room.ann, "/imagine a broken vase [fail]"))

        ask = room.say(room.ann, "/history")
        history = await room.reply(ask)
        assert history.params["text"] == (
            "🕘 Your recent jobs here:\n"
            "1. Nano Banana · failed · just now · “a broken vase [fail]”\n"
            "2. Nano Banana · succeeded · just now · “a paper lantern”"
        )
        assert buttons(history) == [("📤 Send #2 again", f"rs:{made.id}")]
        history_id = history.result["message_id"]

        # Only the asker: the history lists their own results.
        refused = await room.press(room.bob, history_id, f"rs:{made.id}")
        assert refused.params["text"] == "Only the person who asked can get this result again."
        assert refused.params["show_alert"] is True
        answer = await room.press(room.ann, history_id, f"rs:{made.id}")
        assert answer.params["text"] == "📤 Sending it again…"
        again = await fake.wait_for("sendPhoto", n=2)
        assert replied_to(again) == history_id
        assert again.params["caption"] == "Nano Banana · “a paper lantern”"  # nobody pinged
        assert again.upload is not None and photo.upload is not None
        assert again.upload[1] == photo.upload[1]
        assert [t for t, _ in buttons(again)] == ["🔁 Reroll", "🎬 Animate", "🔍 4K", "📎 Original"]
        assert fake.sent("sendDocument") == []  # the original only when asked for
        assert len(room.sandbox.create_calls()) == 2  # nothing was made again

        empty = await room.reply(room.say(room.bob, "/history"))
        assert empty.params["text"] == (
            "You haven't made anything in this chat yet. Try /imagine or /video."
        )
        assert "reply_markup" not in empty.params

        # Our copy gone and the gateway's link dead: said so, nothing sent.
        local = room.core.media.local_result(made.id)
        assert local is not None
        local.unlink()
        room.sandbox.inject_fault("GET", "/files/", status=404)
        gone = await room.press(room.ann, history_id, f"rs:{made.id}")
        assert gone.params["text"] == (
            "I couldn't fetch that result again; it has probably expired."
        )
        room.clock.advance(25 * 3600)  # past the gateway's day
        gone = await room.press(room.ann, history_id, f"rs:{made.id}")
        assert gone.params["text"] == "That result is no longer stored."
        assert gone.params["show_alert"] is True
        assert len(fake.sent("sendPhoto")) == 2


async def test_usage_and_usage_chat_for_admins(open_room: OpenRoom) -> None:
    async with open_room(user_concurrent_jobs=5) as room:
        asks = [
            room.say(room.ann, "/imagine a red fox"),
            room.say(room.ann, "/video waves on a beach"),
            room.say(room.bob, "/imagine a blue whale"),
        ]
        for ask in asks:
            await room.delivered(ask)

        assert await room.answer(room.say(room.ann, "/usage")) == (
            "📊 Today you made 1 of 50 images and 1 of 10 videos here, spending $0.29.\n"
            "This chat has $9.67 of its $10.00 daily budget left.\n"
            f"Limits reset {RESET}."
        )
        assert await room.answer(room.say(room.bob, "/usage chat")) == (
            "Only this chat's admins can see everyone's usage."
        )
        assert await room.answer(room.say(room.ann, "/usage@genrelay_bot chat")) == (
            "📊 Today in this chat: 3 jobs, $0.33.\n1. Ann: 2 jobs, $0.29\n2. Bob: 1 job, $0.04"
        )


async def test_help_names_the_community_commands(open_room: OpenRoom) -> None:
    async with open_room() as room:
        text = await room.answer(room.say(room.bob, "/help"))
        assert (
            "/models – every model, with what it costs\n"
            "/history – your recent jobs here, to get a result again\n"
            "/usage – what you made and spent today (/usage chat: everyone's, for admins)\n"
            "/cancel – stop your job that hasn't been sent yet\n"
            "/settings – this chat's limits and models (admins change them)\n\n"
        ) in text
