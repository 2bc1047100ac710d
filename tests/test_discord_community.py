"""A busy Discord server end to end: limits and budgets, fair turns, confirmation, cancel,
settings, history and usage. Real discord.py inside DiscordAdapter against the fake Discord,
a real core on SQLite (its clock set to just before noon UTC, so every "resets in" is
exact), and the sandbox as the gateway, which must never see a job a rule stopped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

from adapters.discord import DiscordAdapter, sync_commands
from adapters.discord.slash import build_tree
from adapters.discord.texts import HELP_TEXT, OOPS_TEXT, RESULT_UNAVAILABLE_TEXT
from adapters.discord.ui import GenrelayClient, JobButton
from bot.app import Core
from bot.community import SETTING_NAMES
from bot.config import Settings
from bot.main.wiring import open_core
from bot.messages import confirm_text, failure_text
from bot.models import Job, JobState
from sandbox import SandboxGateway
from tests.conftest import running
from tests.fakes.discord_api import MANAGE_GUILD, FakeDiscord, FakeInteraction
from tests.test_discord import (
    APP_ID,
    CHAN,
    EPHEMERAL,
    GUILD,
    TOKEN,
    Clock,
    answered_in_place,
    custom_ids,
    delivered,
    edits,
    job_for,
    labels,
    original,
    refusal,
    refused_first,
    until,
    with_task,
)

ALICE, BOB, CAROL, DAVE = 5000, 5001, 5002, 5003  # Carol has Manage Server; Dave operates
NOON = datetime(2030, 1, 15, 12, tzinfo=UTC).timestamp()
RESETS = "at 00:00 UTC (in 12 h 0 min)"
TOO_MANY_AT_ONCE = (
    "You have 1 job going already, the most at once here. Try again when one of them finishes."
)
OVER_BUDGET = (
    "This chat has used $0.04 of its $0.04 budget for today, and this image costs about "
    f"$0.04. The budget resets {RESETS}."
)
CANCELLED = "🚫 Cancelled. Nothing was sent, so nothing was charged."
UNKNOWN_MESSAGE = {"message": "Unknown Message", "code": 10008}
# The tracker handles one job at a time in tests of a server's line: in the core, a job
# claimed for sending counts toward its chat's load only once it is saved as `submitting`,
# and the tracker claims again at once after starting something, so a freed slot can send
# two waiting jobs (storage/community.py `_claim_submittable`; reported).
SERIAL_TRACKER = {"tracker_concurrency": 1}


def in_line(place: str) -> str:
    return f"⏳ In line for Nano Banana: {place} in this chat. It starts when a slot frees up."


class CoreClock:
    """The core's clock: 50 s before noon UTC when the test starts, then real time, plus
    whatever a test skips. Each test ends long before "in 12 h 0 min" would change."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.skipped = 0.0

    def now(self) -> float:
        return NOON - 50 + (self.loop.time() - self.started) + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds


@pytest.fixture(autouse=True)
def restore_discord_py() -> Iterator[None]:
    """discord.py keeps its REST base and gateway URL in class attributes."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def core_clock() -> CoreClock:
    return CoreClock()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, app_id=APP_ID, bot_user_id=APP_ID, clock=clock) as fd:
        for user_id, name in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol"), (DAVE, "dave")):
            fd.add_user(user_id, name)
        fd.add_guild(GUILD, "studio", channels=[CHAN])
        fd.grant(GUILD, CAROL, MANAGE_GUILD)
        yield fd


@pytest.fixture
def build(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway, fake: FakeDiscord
) -> Callable[..., Settings]:
    def settings(**overrides: Any) -> Settings:
        return make_settings(
            aa_base_url=sandbox.base_url,
            discord_bot_token=SecretStr(fake.token),
            discord_api_base_url=fake.api_base,
            discord_gateway_url=fake.gateway_url,
            operator_ids=f"discord:{DAVE}",
            **overrides,
        )

    return settings


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, core_clock: CoreClock
) -> AsyncIterator[tuple[Core, DiscordAdapter]]:
    async with (
        open_core(settings, clock=core_clock) as core,
        DiscordAdapter(core, settings, guild_ready_timeout=0.05) as adapter,
        running(core),
    ):
        yield core, adapter


# -- helpers -------------------------------------------------------------------------------


async def ask(
    fake: FakeDiscord, user: int, prompt: str, command: str = "imagine", **options: Any
) -> FakeInteraction:
    return await fake.slash(
        command,
        guild_id=GUILD,
        channel_id=CHAN,
        user_id=user,
        options={"prompt": prompt, **options},
    )


async def say(
    fake: FakeDiscord, user: int, command: str, subcommand: str | None = None, **options: Any
) -> str:
    """A command answered privately: its answer."""
    rec = await fake.slash(
        command,
        guild_id=GUILD,
        channel_id=CHAN,
        user_id=user,
        options=options,
        subcommand=subcommand,
    )
    return await refusal(fake, rec)


async def press(
    fake: FakeDiscord, custom_id: str, message: dict[str, Any], user: int
) -> FakeInteraction:
    return await fake.press(
        custom_id, message_id=message["id"], guild_id=GUILD, channel_id=CHAN, user_id=user
    )


async def shows(fake: FakeDiscord, rec: FakeInteraction, text: str) -> dict[str, Any]:
    """The interaction's status message once it says `text`."""

    def check() -> dict[str, Any] | None:
        message = fake.original_response(rec.token)
        return message if message is not None and message["content"] == text else None

    try:
        return await fake.wait_for(check)
    except TimeoutError:
        now = fake.original_response(rec.token)
        raise AssertionError(f"status is {now and now['content']!r}, not {text!r}") from None


async def sent(core: Core, rec: FakeInteraction) -> Job:
    """The interaction's job once the gateway has it."""
    job = await job_for(core, rec)
    return await until(lambda: with_task(core, job.id))


def prompts(sandbox: SandboxGateway) -> list[str]:
    """The prompts of the image jobs the gateway was sent, in order."""
    return [str(call.json["prompt"]) for call in sandbox.create_calls()]


# -- limits --------------------------------------------------------------------------------


async def test_a_user_over_the_limits_is_told_when_to_come_back(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build(user_concurrent_jobs=1, user_daily_images=2)
    async with serving(settings, core_clock) as (core, _):
        sandbox.script_next(duration=60.0)
        first = await ask(fake, ALICE, "a red fox")
        running_job = await sent(core, first)

        too_many = await ask(fake, ALICE, "a blue fox")
        assert await refused_first(fake, too_many) == TOO_MANY_AT_ONCE  # no public trace

        sandbox.finish(str(running_job.upstream_task_id))
        await delivered(core, first)
        second = await ask(fake, ALICE, "a green fox")
        assert (await delivered(core, second)).state is JobState.SUCCEEDED

        over = await ask(fake, ALICE, "a pink fox")
        assert await refused_first(fake, over) == (
            f"You've made 2 images today, the most allowed here. You can go again {RESETS}."
        )
        others = await ask(fake, BOB, "a grey fox")  # the limits are per person
        assert (await delivered(core, others)).state is JobState.SUCCEEDED

        refused = [await job_for(core, rec) for rec in (too_many, over)]
    assert [(j.state, j.error_code) for j in refused] == [
        (JobState.REJECTED, "limit_user_unfinished"),
        (JobState.REJECTED, "limit_user_daily"),
    ]
    assert prompts(sandbox) == ["a red fox", "a green fox", "a grey fox"]
    assert [m["id"] for m in fake.channel_messages(CHAN)] == [
        original(fake, rec)["id"] for rec in (first, second, others)
    ]


async def test_a_spent_chat_budget_refuses_until_a_refund_frees_it(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(chat_daily_budget_usd=0.04), core_clock) as (core, _):
        sandbox.script_next(outcome="refunded", duration=60.0)
        storm = await ask(fake, ALICE, "a storm")
        running_job = await sent(core, storm)

        calm = await ask(fake, BOB, "a calm sea")
        assert await refused_first(fake, calm) == OVER_BUDGET

        sandbox.finish(str(running_job.upstream_task_id), "refunded")
        refunded = await delivered(core, storm)
        assert refunded.state is JobState.REFUNDED
        said = original(fake, storm)["content"]
        assert said == failure_text(refunded, core.catalog) and "$0.04 was refunded" in said

        again = await ask(fake, BOB, "a calm sea")
        assert (await delivered(core, again)).state is JobState.SUCCEEDED
        still = await ask(fake, ALICE, "one more")
        assert await refused_first(fake, still) == OVER_BUDGET
    assert prompts(sandbox) == ["a storm", "a calm sea"]


async def test_the_service_budget_stops_every_server(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(global_daily_budget_usd=0.04), core_clock) as (core, _):
        await delivered(core, await ask(fake, ALICE, "a red fox"))
        rec = await ask(fake, BOB, "a blue whale")
        assert await refused_first(fake, rec) == (
            f"genrelay has reached its spending limit for today. It resets {RESETS}."
        )
        assert (await job_for(core, rec)).error_code == "limit_global_budget"
    assert prompts(sandbox) == ["a red fox"]


async def test_two_requests_for_the_last_slot_admit_exactly_one(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(chat_daily_budget_usd=0.04), core_clock) as (core, _):
        recs = await asyncio.gather(ask(fake, ALICE, "a fox"), ask(fake, BOB, "a whale"))
        jobs = [await job_for(core, rec) for rec in recs]
        refused = [j.state is JobState.REJECTED for j in jobs]
        assert sorted(refused) == [False, True]
        winner, loser = recs if refused[1] else recs[::-1]
        await fake.wait_for(lambda: loser.acknowledged)
        if loser.response_type == 4:  # refused by the check before the defer: privately
            assert await refused_first(fake, loser) == OVER_BUDGET
            shown = [original(fake, winner)["id"]]
        else:  # both passed that check; the store let one in: the other's thinking… says so
            await fake.wait_for(lambda: edits(fake, loser))
            assert answered_in_place(fake, loser) == OVER_BUDGET
            shown = sorted([original(fake, winner)["id"], original(fake, loser)["id"]], key=int)
        assert (await delivered(core, winner)).state is JobState.SUCCEEDED
    assert len(sandbox.create_calls()) == 1
    assert [m["id"] for m in fake.channel_messages(CHAN)] == shown


# -- fair turns ----------------------------------------------------------------------------


async def test_turns_alternate_in_a_busy_server_and_each_waiting_job_shows_its_place(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(user_concurrent_jobs=3, **SERIAL_TRACKER), core_clock) as pair:
        core, adapter = pair
        assert (  # this server runs one job at a time
            await say(fake, CAROL, "settings", "set", name="chat_jobs_at_once", value="1")
            == "✅ chat_jobs_at_once: 1"
        )
        for _ in range(5):
            sandbox.script_next(duration=60.0)
        a1 = await ask(fake, ALICE, "alice 1")
        with_gateway = await sent(core, a1)
        first = await shows(fake, a1, "⏳ Waiting in Nano Banana's queue…")
        assert first["components"] == []  # with the gateway: no Cancel any more
        # A place in line computed just before it was sent does not put it back in line.
        stale = dataclasses.replace(with_gateway, state=JobState.RECEIVED, queue_position=1)
        await adapter.sink.progress(stale)
        assert original(fake, a1) == first

        a2 = await ask(fake, ALICE, "alice 2")
        waiting = await shows(fake, a2, in_line("1st"))
        assert labels(waiting) == ["Cancel"]
        a3 = await ask(fake, ALICE, "alice 3")
        await shows(fake, a3, in_line("2nd"))

        # Bob has had no turn yet: he goes ahead of Alice's waiting jobs, which move back.
        b1 = await ask(fake, BOB, "bob 1")
        await shows(fake, b1, in_line("1st"))
        await shows(fake, a2, in_line("2nd"))
        await shows(fake, a3, in_line("3rd"))
        b2 = await ask(fake, BOB, "bob 2")
        await shows(fake, b2, in_line("3rd"))
        await shows(fake, a3, in_line("4th"))

        # Each finished job lets the next one go, and everyone behind moves up.
        sandbox.finish(str((await sent(core, a1)).upstream_task_id))
        await sent(core, b1)
        await shows(fake, a2, in_line("1st"))
        await shows(fake, b2, in_line("2nd"))
        await shows(fake, a3, in_line("3rd"))
        order = [a1, b1, a2, b2, a3]
        for done, going in itertools.pairwise(order[1:]):
            sandbox.finish(str((await sent(core, done)).upstream_task_id))
            await sent(core, going)
        await shows(fake, a3, "⏳ Waiting in Nano Banana's queue…")
        sandbox.finish(str((await sent(core, a3)).upstream_task_id))
        for rec in order:
            assert (await delivered(core, rec)).state is JobState.SUCCEEDED
    assert prompts(sandbox) == ["alice 1", "bob 1", "alice 2", "bob 2", "alice 3"]


# -- confirmation --------------------------------------------------------------------------


async def test_an_error_after_confirm_is_said_privately_and_the_status_stays(
    fake: FakeDiscord,
    build: Callable[..., Settings],
    core_clock: CoreClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Confirm answers with a deferred update, whose original is the job's status message:
    an error after it is a private followup; that message is neither deleted nor turned
    into the apology."""
    async with serving(build(video_needs_confirmation=True), core_clock) as (core, adapter):
        rec = await ask(fake, ALICE, "a paper boat", "video", model="veo")
        job = await job_for(core, rec)
        held = await shows(fake, rec, confirm_text(job, core.catalog, 300))

        async def broken(job: Job) -> str | None:
            raise RuntimeError("the status could not be read")

        monkeypatch.setattr(adapter.sink, "progress", broken)
        confirm = await press(fake, f"genrelay:cf:{job.id}", held, ALICE)
        (apology,) = await fake.wait_for(lambda: fake.followups(confirm.token))
        assert apology["flags"] & EPHEMERAL and apology["content"] == OOPS_TEXT
        assert [cb["type"] for cb in confirm.callbacks] == [6]
        assert fake.find_requests("DELETE", f"/webhooks/{APP_ID}/") == []
        assert fake.find_requests("PATCH", f"/webhooks/{APP_ID}/{confirm.token}") == []
        assert original(fake, rec)["id"] == held["id"]  # the status message is still there


async def test_a_video_is_sent_only_after_its_askers_confirm_even_after_a_restart(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build(video_needs_confirmation=True)
    async with serving(settings, core_clock) as (core, _):
        rec = await ask(fake, ALICE, "a paper boat", "video", model="veo")
        job = await job_for(core, rec)
        text = confirm_text(job, core.catalog, 300)
        assert text == (
            "🎬 Veo 3.1 video for “a paper boat”: about $0.50, usually ready in ~2 min. "
            "Press Confirm to start (only the asker can). This expires in 5 min."
        )
        held = await shows(fake, rec, text)
        assert labels(held) == ["Confirm", "Cancel"]
        confirm, cancel = custom_ids(held)
        assert (confirm, cancel) == (f"genrelay:cf:{job.id}", f"genrelay:cx:{job.id}")

        by_bob = await press(fake, confirm, held, BOB)
        assert await refusal(fake, by_bob) == "Only the person who asked can confirm this."
        cancel_by_bob = await press(fake, cancel, held, BOB)
        assert await refusal(fake, cancel_by_bob) == "Only the person who asked can cancel it."
        assert (await job_for(core, rec)).hold == "confirm"

    assert sandbox.requests == []  # nothing before the asker's Confirm
    async with serving(settings, core_clock) as (core, _):  # the buttons outlive the process
        sandbox.script_next(duration=0.3)
        # A double click: both presses carry the message as it was, with its buttons.
        presses = await asyncio.gather(*(press(fake, confirm, held, ALICE) for _ in range(2)))
        done = await delivered(core, rec)
        assert done.state is JobState.SUCCEEDED
        for each in presses:
            await fake.wait_for(lambda each=each: each.acknowledged)
        (twice,) = [p for p in presses if p.response_type == 4]
        assert await refusal(fake, twice) == "This request is no longer waiting for confirmation."
        (once,) = [p for p in presses if p is not twice]
        assert [cb["type"] for cb in once.callbacks] == [6]  # the status message changes
        message = original(fake, rec)
        ((name, _, ctype),) = fake.message_files(message)
        assert (name, ctype) == (f"{job.id}-0.mp4", "video/mp4")
        assert labels(message) == ["Reroll"]
    (call,) = sandbox.create_calls()
    assert "a paper boat" in call.body.decode()


async def test_a_reroll_over_the_daily_limit_is_refused_before_any_thinking(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(user_daily_images=1), core_clock) as (core, _):
        image = await ask(fake, ALICE, "a red fox")
        await delivered(core, image)
        result = original(fake, image)
        reroll = next(c for c in custom_ids(result) if c.startswith("genrelay:rr:"))

        again = await press(fake, reroll, result, ALICE)
        assert await refused_first(fake, again) == (
            f"You've made 1 image today, the most allowed here. You can go again {RESETS}."
        )
        job = await job_for(core, again)
        assert (job.state, job.action, job.error_code) == (
            JobState.REJECTED,
            "reroll",
            "limit_user_daily",
        )
        by_bob = await press(fake, reroll, result, BOB)  # Bob has his own count
        assert (await delivered(core, by_bob)).state is JobState.SUCCEEDED
        assert [cb["type"] for cb in by_bob.callbacks] == [5]
    assert prompts(sandbox) == ["a red fox", "a red fox"]


async def test_animate_asks_its_presser_to_confirm_first(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(video_needs_confirmation=True), core_clock) as (core, _):
        image = await ask(fake, ALICE, "a red fox")
        await delivered(core, image)
        result = original(fake, image)
        animate = next(c for c in custom_ids(result) if c.startswith("genrelay:an:"))

        by_bob = await press(fake, animate, result, BOB)  # Bob's video, held for Bob
        job = await job_for(core, by_bob)
        assert (job.action, job.hold) == ("animate", "confirm")
        held = await shows(fake, by_bob, confirm_text(job, core.catalog, 300))
        assert labels(held) == ["Confirm", "Cancel"]
        by_alice = await press(fake, f"genrelay:cf:{job.id}", held, ALICE)
        assert await refusal(fake, by_alice) == "Only the person who asked can confirm this."
        assert len(sandbox.create_calls()) == 1  # the image only

        sandbox.script_next(duration=0.3)
        await press(fake, f"genrelay:cf:{job.id}", held, BOB)
        assert (await delivered(core, by_bob)).state is JobState.SUCCEEDED
    assert len(sandbox.create_calls()) == 2


async def test_a_video_nobody_confirms_expires_and_one_can_be_cancelled(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build(video_needs_confirmation=True, confirm_timeout_s=120)
    async with serving(settings, core_clock) as (core, _):
        boat = await ask(fake, ALICE, "a paper boat", "video")
        kite = await ask(fake, ALICE, "a red kite", "video")
        boat_job, kite_job = await job_for(core, boat), await job_for(core, kite)
        held = await shows(fake, kite, confirm_text(kite_job, core.catalog, 120))
        await shows(fake, boat, confirm_text(boat_job, core.catalog, 120))
        assert "This expires in 2 min." in held["content"]

        cancelled = await press(fake, f"genrelay:cx:{kite_job.id}", held, ALICE)
        assert labels(await shows(fake, kite, CANCELLED)) == ["Reroll"]
        assert [cb["type"] for cb in cancelled.callbacks] == [6]

        core_clock.advance(121)
        await core.service.expire_holds()  # what the core's sweep does every few seconds
        core.notifier.wake()
        expired = await shows(
            fake,
            boat,
            "🚫 Nobody confirmed this within 2 minutes, so it was not sent. Nothing was charged.",
        )
        assert labels(expired) == ["Reroll"]
        ended = [await core.store.get(j.id) for j in (boat_job, kite_job)]
    assert [(j.state, j.error_code) for j in ended if j] == [
        (JobState.REJECTED, "confirm_expired"),
        (JobState.REJECTED, "cancelled"),
    ]
    assert sandbox.requests == []


async def test_a_confirm_after_the_request_token_expired_edits_through_the_press(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build(video_needs_confirmation=True, confirm_timeout_s=3600)
    async with serving(settings, core_clock) as (core, _):
        sandbox.script_next(duration=60.0)
        rec = await ask(fake, ALICE, "a slow boat", "video")
        job = await job_for(core, rec)
        held = await shows(fake, rec, confirm_text(job, core.catalog, 3600))
        core_clock.advance(15 * 60)  # the request's interaction can no longer be edited

        by_alice = await press(fake, f"genrelay:cf:{job.id}", held, ALICE)
        await fake.wait_for(lambda: by_alice.acknowledged)
        assert [cb["type"] for cb in by_alice.callbacks] == [7]
        assert by_alice.callbacks[0]["data"]["content"] == "⏳ Queued on Veo 3.1 Fast…"
        assert labels(original(fake, rec)) == ["Cancel"]
        await sent(core, rec)
    (call,) = sandbox.create_calls()
    assert "a slow boat" in call.body.decode()


# -- cancel --------------------------------------------------------------------------------


async def test_cancel_by_button_and_by_command(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build(chat_concurrent_jobs=1, user_concurrent_jobs=3)
    async with serving(settings, core_clock) as (core, _):
        sandbox.script_next(duration=60.0)
        a1 = await ask(fake, ALICE, "first")
        running_job = await sent(core, a1)
        a2 = await ask(fake, ALICE, "second")
        a3 = await ask(fake, ALICE, "third")
        waiting = await shows(fake, a2, in_line("1st"))
        await shows(fake, a3, in_line("2nd"))
        (cancel,) = custom_ids(waiting)

        by_bob = await press(fake, cancel, waiting, BOB)
        assert await refusal(fake, by_bob) == "Only the person who asked can cancel it."
        # A double click: the first press cancels, the second hears it is over.
        presses = await asyncio.gather(*(press(fake, cancel, waiting, ALICE) for _ in range(2)))
        assert labels(await shows(fake, a2, CANCELLED)) == ["Reroll"]
        await shows(fake, a3, in_line("1st"))  # the line moved up
        for each in presses:
            await fake.wait_for(lambda each=each: each.acknowledged)
        assert sorted(p.response_type or 0 for p in presses) == [4, 6]
        (twice,) = [p for p in presses if p.response_type == 4]
        assert await refusal(fake, twice) == "That job has already finished."

        assert await say(fake, ALICE, "cancel") == (
            "Cancelled. Nothing was sent, so nothing was charged."
        )
        await shows(fake, a3, CANCELLED)
        assert await say(fake, ALICE, "cancel") == (
            "That job is already with Nano Banana and can't be stopped; "
            "I'll still post the result when it's ready."
        )
        assert await say(fake, BOB, "cancel") == "You have nothing waiting or running here."

        sandbox.finish(str(running_job.upstream_task_id))
        assert (await delivered(core, a1)).state is JobState.SUCCEEDED
        states = [(await job_for(core, r)).error_code for r in (a2, a3)]
    assert states == ["cancelled", "cancelled"]
    assert prompts(sandbox) == ["first"]


# -- settings ------------------------------------------------------------------------------


async def test_a_blocked_word_or_model_is_refused_before_anything_is_sent(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(), core_clock) as (core, _):
        assert (
            await say(fake, CAROL, "settings", "set", name="blocked_words", value="Spoiler, gore")
            == "✅ blocked_words: spoiler, gore"
        )
        assert (
            await say(fake, CAROL, "settings", "set", name="allowed_models", value="nanobanana")
            == "✅ allowed_models: nanobanana"
        )
        spoiler = await ask(fake, BOB, "a SPOILER of the finale")
        assert await refused_first(fake, spoiler) == (
            "Your prompt contains “spoiler”, which this chat does not allow. Please rephrase it."
        )
        pro = await ask(fake, BOB, "a fox", model="nanobanana_pro")
        assert await refused_first(fake, pro) == (
            "This chat doesn't allow Nano Banana Pro. Allowed here: nanobanana."
        )
        for rec in (spoiler, pro):
            assert (await job_for(core, rec)).state is JobState.REJECTED
    assert sandbox.requests == []
    assert fake.channel_messages(CHAN) == []


async def test_only_admins_change_settings_and_they_survive_a_restart(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build()
    async with serving(settings, core_clock) as _:
        assert await say(fake, BOB, "settings", "set", name="video_confirm", value="on") == (
            "Only this chat's admins can change its settings. Ask one of them."
        )
        assert await say(fake, CAROL, "settings", "set", name="video_confirm", value="maybe") == (
            "video_confirm takes on or off."
        )
        assert (
            await say(fake, CAROL, "settings", "set", name="video_confirm", value="on")
            == "✅ video_confirm: on"
        )
        assert (  # an operator from the configuration, without Manage Server
            await say(fake, DAVE, "settings", "set", name="chat_budget_usd", value="$2.5")
            == "✅ chat_budget_usd: $2.50"
        )
        assert await say(
            fake, CAROL, "settings", "set", name="chat_jobs_at_once", value="99999999999999999999"
        ) == ("chat_jobs_at_once takes a whole number from 1 to 100, e.g. chat_jobs_at_once 3.")
        assert await say(fake, CAROL, "settings", "set", name="chat_budget_usd", value="inf") == (
            "chat_budget_usd takes an amount in USD from 0.01 to 100,000 with at most "
            "2 decimals, or 0 for no budget, e.g. chat_budget_usd 12.50."
        )

    async with serving(settings, core_clock) as (core, _):  # a new process, same database
        assert await say(fake, BOB, "settings", "show") == (
            "⚙️ Settings for this chat:\n"
            "• image_model: nanobanana\n"
            "• video_model: veo_fast\n"
            "• allowed_models: all\n"
            "• user_jobs_at_once: 2\n"
            "• user_images_per_day: 50\n"
            "• user_videos_per_day: 10\n"
            "• chat_jobs_at_once: 3\n"
            "• chat_budget_usd: $2.50\n"
            "• video_confirm: on\n"
            "• blocked_words: none\n"
            "• session_starters: admins\n"
            "Members with Manage Server change one with /settings set."
        )
        rec = await ask(fake, BOB, "a paper boat", "video")
        job = await job_for(core, rec)
        assert job.hold == "confirm"
        await shows(fake, rec, confirm_text(job, core.catalog, 300))
    assert sandbox.requests == []


async def test_settings_set_offers_the_names_and_suggests_values(
    fake: FakeDiscord,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build()
    assert await sync_commands(settings, guild_id=GUILD) == 0
    commands = {c["name"]: c for c in fake.registered_commands(GUILD)}
    show, set_ = commands["settings"]["options"]
    assert (show["name"], show["type"], set_["name"], set_["type"]) == ("show", 1, "set", 1)
    name, value = set_["options"]
    assert [c["value"] for c in name["choices"]] == list(SETTING_NAMES)
    assert name["choices"][8]["name"] == "video_confirm — videos need the asker's Confirm (on/off)"
    assert value["autocomplete"] and value["required"]
    (scope,) = commands["usage"]["options"]
    assert [(c["value"], c["name"]) for c in scope["choices"]] == [
        ("me", "me — your jobs and spend today"),
        ("chat", "chat — everyone's (admins)"),
    ]
    assert not scope["required"]
    assert commands["history"].get("options", []) == commands["cancel"].get("options", []) == []

    async with serving(settings, core_clock):

        async def complete(setting: str, typed: str) -> list[str]:
            rec = await fake.autocomplete(
                "settings",
                subcommand="set",
                focused="value",
                value=typed,
                options={"name": setting},
                guild_id=GUILD,
                channel_id=CHAN,
                user_id=CAROL,
            )
            await fake.wait_for(lambda: rec.acknowledged)
            return [c["value"] for c in rec.autocomplete_choices or []]

        assert await complete("video_confirm", "") == ["on", "off"]
        assert await complete("image_model", "") == ["gpt-image-2", "nanobanana", "nanobanana_pro"]
        assert await complete("allowed_models", "nano") == ["nanobanana", "nanobanana_pro"]
        assert await complete("allowed_models", "veo, nanobanana,pro") == [
            "veo, nanobanana, nanobanana_pro"
        ]
        assert await complete("blocked_words", "") == ["none"]
        assert await complete("chat_budget_usd", "5") == []

        rec = await fake.slash(
            "settings",
            subcommand="set",
            guild_id=GUILD,
            channel_id=CHAN,
            user_id=CAROL,
            options={"name": "user_images_per_day", "value": "many"},
        )
        assert await refusal(fake, rec) == (
            "user_images_per_day takes a whole number from 0 to 10,000, e.g. user_images_per_day 50."
        )


# -- history and usage ---------------------------------------------------------------------


async def test_history_lists_my_jobs_and_sends_a_result_again(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(), core_clock) as (core, _):
        fox = await delivered(core, await ask(fake, ALICE, "a red fox"))
        await delivered(core, await ask(fake, ALICE, "[fail] a sad fox"))
        await delivered(core, await ask(fake, BOB, "a blue whale"))
        public = fake.channel_messages(CHAN)

        rec = await fake.slash("history", guild_id=GUILD, channel_id=CHAN, user_id=ALICE)
        await fake.wait_for(lambda: rec.acknowledged)
        (answer,) = [cb["data"] for cb in rec.callbacks]
        assert answer["flags"] & EPHEMERAL
        assert answer["content"] == (
            "🕘 Your recent jobs here:\n"
            "1. Nano Banana · failed · just now · “[fail] a sad fox”\n"
            "2. Nano Banana · succeeded · just now · “a red fox”"
        )
        history = original(fake, rec)
        assert labels(history) == ["Send again 2"]
        (again,) = custom_ids(history)
        assert again == f"genrelay:sa:{fox.id}"

        resent = await press(fake, again, history, ALICE)
        message = await fake.wait_for(
            lambda: (m := fake.original_response(resent.token)) and m["attachments"] and m
        )
        assert [cb["type"] for cb in resent.callbacks] == [5]
        assert resent.callbacks[0]["data"]["flags"] & EPHEMERAL
        result = core.settings.data_dir / "results" / f"{fox.id}-0.png"
        assert fake.message_files(message) == [(result.name, result.read_bytes(), "image/png")]
        assert message["embeds"][0]["title"] == "Nano Banana"
        assert message["embeds"][0]["description"] == "“a red fox”"
        assert labels(message) == ["Reroll", "Animate", "4K"]
        assert fake.channel_messages(CHAN) == public  # nothing new in the channel

        # Our copy is gone and so is the gateway's: said, not left thinking.
        result.unlink()
        sandbox.inject_fault("GET", "/files/", status=404)
        gone = await press(fake, again, history, ALICE)
        await shows(fake, gone, RESULT_UNAVAILABLE_TEXT)

        core_clock.advance(25 * 3600)  # past the day the gateway keeps results
        old = await press(fake, again, history, ALICE)
        assert await refusal(fake, old) == "That result is no longer stored."

        assert await say(fake, DAVE, "history") == (
            "You haven't made anything in this chat yet. Try /imagine or /video."
        )


async def test_usage_for_me_and_for_the_whole_server(
    fake: FakeDiscord,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(), core_clock) as (core, _):
        for user, prompt in ((ALICE, "a red fox"), (ALICE, "a fox cub"), (BOB, "a whale")):
            await delivered(core, await ask(fake, user, prompt))

        assert await say(fake, ALICE, "usage") == (
            "📊 Today you made 2 of 50 images and 0 of 10 videos here, spending $0.08.\n"
            "This chat has $9.88 of its $10.00 daily budget left.\n"
            f"Limits reset {RESETS}."
        )
        assert await say(fake, ALICE, "usage", scope="chat") == (
            "Only this chat's admins can see everyone's usage."
        )
        assert await say(fake, CAROL, "usage", scope="chat") == (
            "📊 Today in this chat: 3 jobs, $0.12.\n1. alice: 2 jobs, $0.08\n2. bob: 1 job, $0.04"
        )
        assert await say(fake, CAROL, "usage", scope="me") == (
            "📊 Today you made 0 of 50 images and 0 of 10 videos here, spending $0.00.\n"
            "This chat has $9.88 of its $10.00 daily budget left.\n"
            f"Limits reset {RESETS}."
        )


# -- help and failures ---------------------------------------------------------------------


async def test_help_names_every_command(
    fake: FakeDiscord, build: Callable[..., Settings], core_clock: CoreClock
) -> None:
    async with serving(build(), core_clock):
        assert await say(fake, BOB, "help") == HELP_TEXT
    tree = build_tree(GenrelayClient(None, intents=discord.Intents.default()))
    names = [c.name for c in tree.get_commands()]
    assert names == [
        "imagine",
        "video",
        "models",
        "help",
        "settings",
        "history",
        "usage",
        "cancel",
        "session",
    ]
    for name in names[:3] + names[4:]:  # all but /help itself
        assert f"`/{name}" in HELP_TEXT
    assert "`/settings show`" in HELP_TEXT and "`/settings set`" in HELP_TEXT


async def test_an_unexpected_error_in_a_command_is_answered(
    fake: FakeDiscord,
    build: Callable[..., Settings],
    core_clock: CoreClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serving(build(), core_clock) as (core, adapter):

        async def broken(*args: object, **kwargs: object) -> str:
            raise RuntimeError("the disk is full")

        monkeypatch.setattr(core.service, "rules", broken)
        monkeypatch.setattr(core.service, "history", broken)
        monkeypatch.setattr(core.service, "stored_result", broken)
        assert await say(fake, BOB, "settings", "show") == OOPS_TEXT
        assert await say(fake, BOB, "history") == OOPS_TEXT
        view = discord.ui.View(timeout=None)
        view.add_item(JobButton("sa", "abcdefghjk"))
        posted = await adapter.client.get_partial_messageable(CHAN).send("history", view=view)
        resend = await fake.press(
            "genrelay:sa:abcdefghjk",
            message_id=posted.id,
            guild_id=GUILD,
            channel_id=CHAN,
            user_id=BOB,
        )
        assert await refusal(fake, resend) == OOPS_TEXT
        assert OOPS_TEXT == "Something went wrong on my side. Please try again."


async def test_a_confirm_that_cannot_be_shown_is_not_left_waiting(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build(video_needs_confirmation=True)
    async with serving(settings, core_clock) as (core, _):
        fake.fail_next("PATCH", f"/webhooks/{APP_ID}/", status=404, body=UNKNOWN_MESSAGE)
        rec = await ask(fake, ALICE, "a paper boat", "video")
        job = await delivered(core, rec)
        assert labels(await shows(fake, rec, CANCELLED)) == ["Reroll"]
    assert (job.state, job.error_code) == (JobState.REJECTED, "cancelled")
    assert [r.status for r in fake.find_requests("PATCH", f"/webhooks/{APP_ID}/")] == [404, 200]
    assert sandbox.requests == []


async def test_no_progress_edit_once_the_stored_job_has_ended(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    # An update that was on its way when the job ended (the tracker stored the end; its
    # delivery comes next on the same interaction route) is not shown: the result is
    # the next thing written, with no progress edit before it.
    async with serving(build(**SERIAL_TRACKER), core_clock) as pair:
        core, adapter = pair
        sandbox.script_next(duration=60.0)
        a1 = await ask(fake, ALICE, "alice 1")
        job = await sent(core, a1)
        await shows(fake, a1, "⏳ Waiting in Nano Banana's queue…")
        stored = await core.store.get(job.id)
        assert stored is not None
        await core.store.save(dataclasses.replace(stored, state=JobState.TIMED_OUT))
        before = original(fake, a1)
        late = dataclasses.replace(stored, state=JobState.RUNNING, progress=50)
        await adapter.sink.progress(late)
        assert original(fake, a1) == before
