"""Shared chats in the core: limits with a time to retry, budgets and refunds, fair turns,
confirmation by the asker only, blocked words, admin-only settings, atomic last slot. Each
test runs on both job stores (SQLite and PostgreSQL: the `database_url` fixture)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest

from bot.app import Core
from bot.config import Settings
from bot.errors import RequestRejected
from bot.main.wiring import open_core
from bot.messages import (
    cancel_text,
    chat_usage_text,
    confirm_text,
    history_text,
    progress_text,
    rules_text,
    setting_changed_text,
    usage_text,
)
from bot.models import GenerationRequest, JobState, Kind, Origin
from bot.outcomes import NothingRecorded, Recorded, RecordUnknown
from sandbox import SandboxGateway
from tests.conftest import FakeClock
from tests.helpers import RecordingSink

CHAT = "g1"


def who(user: str, chat: str = CHAT) -> Origin:
    return Origin(platform="test", chat_id=chat, user_id=user, user_name=user.title())


def ask(
    user: str, prompt: str = "a fox in snow", kind: Kind = Kind.IMAGE, model: str | None = None
) -> GenerationRequest:
    return GenerationRequest(kind=kind, prompt=prompt, origin=who(user), model=model)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_800_000_000.0 + 12 * 3600 - 1_800_000_000.0 % 86400)  # noon UTC


@pytest.fixture
async def gw(clock: FakeClock) -> AsyncIterator[SandboxGateway]:
    async with SandboxGateway(clock=clock.now, late_url_polls=0) as g:
        yield g


@pytest.fixture
def build(
    make_settings: Callable[..., Settings], gw: SandboxGateway, database_url: str
) -> Callable[..., Settings]:
    def settings(**kw: object) -> Settings:
        return make_settings(
            aa_base_url=gw.base_url,
            database_url=database_url,
            poll_first_delay_s=1.0,
            poll_interval_s=1.0,
            **kw,
        )

    return settings


async def step(core: Core, clock: FakeClock, seconds: float = 0.0) -> None:
    clock.advance(seconds)
    await core.tracker.run_once()
    await core.tracker.drain()
    await core.notifier.run_once()
    await core.notifier.drain()


async def test_user_over_concurrent_limit_is_told_to_wait(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(user_concurrent_jobs=2), clock=clock) as core:
        await core.service.submit(ask("ann"))
        await core.service.submit(ask("ann"))
        with pytest.raises(RequestRejected) as info:
            await core.service.submit(ask("ann"))
        assert info.value.message == (
            "You have 2 jobs going already, the most at once here. "
            "Try again when one of them finishes."
        )
        await core.service.submit(ask("bob"))  # someone else still can
        hits = core.metrics.registry.get_sample_value(
            "genrelay_limits_hit_total", {"limit": "user_unfinished"}
        )
        assert hits == 1
        rejected = [j for j in await core.store.recent(10) if j.state is JobState.REJECTED]
        assert [j.error_code for j in rejected] == ["limit_user_unfinished"]
    assert gw.requests == []


async def test_precheck_finds_a_limit_without_recording_anything(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    """What Discord asks before its public "thinking…": the same words as submit's."""
    async with open_core(build(user_concurrent_jobs=1, operator_ids=""), clock=clock) as core:
        await core.service.precheck(ask("ann"))
        assert await core.store.recent(10) == []
        await core.service.submit(ask("ann"))
        with pytest.raises(RequestRejected) as info:
            await core.service.precheck(ask("ann"))
        assert info.value.code == "limit_user_unfinished"
        assert info.value.message == (
            "You have 1 job going already, the most at once here. "
            "Try again when one of them finishes."
        )
        assert len(await core.store.recent(10)) == 1  # nothing recorded by the check
        await core.service.record_rejected(ask("ann"), info.value)
        with pytest.raises(RequestRejected, match="Your prompt is empty"):
            await core.service.precheck(ask("bob", prompt="\x00\u202e"))
        await core.service.precheck(ask("bob"))  # the limit is per person
        jobs = await core.store.recent(10)
        assert [(j.state, j.error_code) for j in jobs] == [
            (JobState.REJECTED, "limit_user_unfinished"),
            (JobState.RECEIVED, None),
        ]
    assert gw.requests == []


async def test_daily_limit_says_when_to_come_back(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(user_daily_videos=1, user_concurrent_jobs=5), clock=clock) as core:
        core.notifier.register(RecordingSink())
        await core.service.submit(ask("ann", kind=Kind.VIDEO, model="veo_fast"))
        with pytest.raises(RequestRejected) as info:
            await core.service.submit(ask("ann", kind=Kind.VIDEO, model="veo_fast"))
        assert info.value.message == (
            "You've made 1 video today, the most allowed here. "
            "You can go again at 00:00 UTC (in 12 h 0 min)."
        )
        await core.service.submit(ask("ann"))  # images have their own count
        clock.advance(13 * 3600)  # a new day
        await core.service.submit(ask("ann", kind=Kind.VIDEO, model="veo_fast"))


async def test_chat_budget_refuses_and_a_refund_frees_it(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(
        build(chat_daily_budget_usd=1.0, user_concurrent_jobs=5), clock=clock
    ) as core:
        core.notifier.register(RecordingSink())
        gw.script_next(outcome="refunded")
        first = await core.service.submit(ask("ann", "a storm", Kind.VIDEO, "sora_studio"))  # $0.65
        with pytest.raises(RequestRejected) as info:
            await core.service.submit(ask("bob", "a calm sea", Kind.VIDEO, "sora_fast"))
        assert info.value.message == (
            "This chat has used $0.65 of its $1.00 budget for today, and this video costs "
            "about $0.65. The budget resets at 00:00 UTC (in 12 h 0 min)."
        )
        await step(core, clock)
        for _ in range(12):
            await step(core, clock, 1.0)
        done = await core.store.get(first.id)
        assert done is not None and done.state is JobState.REFUNDED
        await core.service.submit(ask("bob", "a calm sea", Kind.VIDEO, "sora_fast"))  # freed
        other_chat = GenerationRequest(
            kind=Kind.VIDEO, prompt="x y z", origin=who("cy", "g2"), model="sora_fast"
        )
        await core.service.submit(other_chat)  # budgets are per chat
    assert len(gw.create_calls()) == 1


async def test_global_budget_stops_everyone(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    async with open_core(build(global_daily_budget_usd=0.5), clock=clock) as core:
        await core.service.submit(ask("ann", model="nanobanana_pro"))
        other = GenerationRequest(
            kind=Kind.IMAGE, prompt="p", origin=who("bob", "g9"), model="nanobanana_pro"
        )
        await core.service.submit(other)
        with pytest.raises(
            RequestRejected, match="genrelay has reached its spending limit for today"
        ):
            await core.service.submit(
                GenerationRequest(
                    kind=Kind.VIDEO, prompt="p q r", origin=who("cy", "g8"), model="veo"
                )
            )


async def test_saturated_chat_alternates_between_users(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(
        build(chat_concurrent_jobs=1, user_concurrent_jobs=10), clock=clock
    ) as core:
        core.notifier.register(RecordingSink())
        gw.durations["nanobanana"] = 1.0
        ann = [await core.service.submit(ask("ann", f"ann {i}")) for i in range(4)]
        bob = await core.service.submit(ask("bob", "bob 0"))
        assert ann[0].queue_position is None and ann[1].queue_position is None
        assert bob.queue_position is None  # nobody is with the gateway yet
        order: list[str] = []
        for _ in range(40):
            await step(core, clock, 1.0)
            for call in gw.create_calls():
                prompt = call.json["prompt"]
                if prompt not in order:
                    order.append(prompt)
            if len(order) == 5:
                break
        assert order == ["ann 0", "bob 0", "ann 1", "ann 2", "ann 3"]


async def test_place_in_line_is_shown(build: Callable[..., Settings], clock: FakeClock) -> None:
    async with open_core(
        build(chat_concurrent_jobs=1, user_concurrent_jobs=10), clock=clock
    ) as core:
        await core.service.submit(ask("ann", "first"))
        await step(core, clock)  # first is with the gateway: the chat is full
        second = await core.service.submit(ask("bob", "second"))
        third = await core.service.submit(ask("cy", "third"))
        assert (second.queue_position, third.queue_position) == (1, 2)
        assert progress_text(third, core.catalog) == (
            "⏳ In line for Nano Banana: 2nd in this chat. It starts when a slot frees up."
        )
        line = await core.service.waiting_in_line("test", CHAT)
        assert [(j.id, j.queue_position) for j in line] == [(second.id, 1), (third.id, 2)]
        # While `second` is being sent, only `third` still waits, now first in line.
        line = await core.service.waiting_in_line("test", CHAT, leaving=frozenset({second.id}))
        assert [(j.id, j.queue_position) for j in line] == [(third.id, 1)]


async def test_video_needs_the_askers_confirm(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(video_needs_confirmation=True), clock=clock) as core:
        job = await core.service.submit(ask("ann", "a paper boat", Kind.VIDEO, "veo"))
        assert job.hold == "confirm"
        assert confirm_text(job, core.catalog, 300) == (
            "🎬 Veo 3.1 video for “a paper boat”: about $0.50, usually ready in ~2 min. "
            "Press Confirm to start (only the asker can). This expires in 5 min."
        )
        for timeout_s, words in ((45, "45 s"), (59.4, "59 s"), (90, "2 min"), (60, "1 min")):
            assert confirm_text(job, core.catalog, timeout_s).endswith(
                f"Press Confirm to start (only the asker can). This expires in {words}."
            )
        await step(core, clock, 5)
        assert gw.requests == []  # nothing before Confirm
        with pytest.raises(
            RequestRejected, match=re.escape("Only the person who asked can confirm this.")
        ):
            await core.service.confirm(job.id, who("bob"))
        await step(core, clock, 5)
        assert gw.requests == []
        await core.service.confirm(job.id, who("ann"))
        await step(core, clock)
        assert len(gw.create_calls()) == 1
        with pytest.raises(RequestRejected, match="no longer waiting for confirmation"):
            await core.service.confirm(job.id, who("ann"))
        image = await core.service.submit(ask("ann"))
        assert image.hold is None  # images never wait


async def test_unconfirmed_video_expires_and_the_asker_is_told(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(
        build(video_needs_confirmation=True, confirm_timeout_s=120), clock=clock
    ) as core:
        sink = RecordingSink()
        core.notifier.register(sink)
        job = await core.service.submit(ask("ann", "a paper boat", Kind.VIDEO, "veo"))
        clock.advance(121)
        assert await core.service.expire_holds() == 1
        await step(core, clock)
        ((delivered, _),) = sink.delivered
        assert delivered.id == job.id and delivered.state is JobState.REJECTED
        assert delivered.error_message == (
            "Nobody confirmed this within 2 minutes, so it was not sent. Nothing was charged."
        )
    assert gw.requests == []


async def test_cancel_before_submit_and_after(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(
        build(chat_concurrent_jobs=1, user_concurrent_jobs=5), clock=clock
    ) as core:
        first = await core.service.submit(ask("ann", "first"))
        await step(core, clock)
        waiting = await core.service.submit(ask("ann", "second"))
        with pytest.raises(
            RequestRejected, match=re.escape("Only the person who asked can cancel it.")
        ):
            await core.service.cancel(waiting.id, who("bob"))
        assert cancel_text(await core.service.cancel_latest(who("ann"))) == (
            "Cancelled. Nothing was sent, so nothing was charged."
        )
        assert cancel_text(await core.service.cancel(first.id, who("ann"))) == (
            "That job is already with Nano Banana and can't be stopped; "
            "I'll still post the result when it's ready."
        )
        await step(core, clock, 5)
        assert [c.json["prompt"] for c in gw.create_calls()] == ["first"]
        assert (
            cancel_text(await core.service.cancel_latest(who("zed")))
            == "You have nothing waiting or running here."
        )


async def test_blocked_word_and_allowed_models(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(operator_ids="test:root"), clock=clock) as core:
        admin = who("ann")
        await core.service.change_setting(admin, "blocked_words", "gore, Spoiler", is_admin=True)
        await core.service.change_setting(
            admin, "allowed_models", "nanobanana, veo_fast", is_admin=True
        )
        with pytest.raises(RequestRejected) as info:
            await core.service.submit(ask("bob", "a SPOILER of the finale"))
        assert (
            info.value.message
            == "Your prompt contains “spoiler”, which this chat does not allow. Please rephrase it."
        )
        with pytest.raises(RequestRejected) as info:
            await core.service.submit(ask("bob", model="nanobanana_pro"))
        assert (
            info.value.message
            == "This chat doesn't allow Nano Banana Pro. Allowed here: nanobanana."
        )
        await core.service.submit(ask("bob"))
    assert gw.requests == []


async def test_settings_are_for_admins_and_survive_restart(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = build(operator_ids="test:root")
    async with open_core(settings, clock=clock) as core:
        with pytest.raises(RequestRejected) as info:
            await core.service.change_setting(who("bob"), "video_confirm", "on", is_admin=False)
        assert (
            info.value.message
            == "Only this chat's admins can change its settings. Ask one of them."
        )
        assert (
            setting_changed_text(
                await core.service.change_setting(who("ann"), "video_confirm", "on", is_admin=True)
            )
            == "✅ video_confirm: on"
        )
        assert (
            setting_changed_text(
                await core.service.change_setting(
                    who("root"), "chat_budget_usd", "$2.5", is_admin=False
                )
            )
            == "✅ chat_budget_usd: $2.50"
        )
        assert (
            setting_changed_text(
                await core.service.change_setting(
                    who("ann"), "image_model", "nanobanana_pro", is_admin=True
                )
            )
            == "✅ image_model: nanobanana_pro"
        )
        with pytest.raises(RequestRejected, match="image_model must be a image model"):
            await core.service.change_setting(who("ann"), "image_model", "veo", is_admin=True)
        with pytest.raises(RequestRejected, match="There is no setting “colour”"):
            await core.service.change_setting(who("ann"), "colour", "red", is_admin=True)
    async with open_core(settings, clock=clock) as again:
        text = rules_text(await again.service.rules(who("bob")))
        assert "• video_confirm: on" in text and "• chat_budget_usd: $2.50" in text
        job = await again.service.submit(ask("bob"))
        assert job.model == "nanobanana_pro"  # the chat's default image model


async def test_two_requests_for_the_last_slot_admit_exactly_one(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    async with open_core(build(user_concurrent_jobs=1), clock=clock) as core:
        results = await asyncio.gather(
            *(core.service.submit(ask("ann", f"p{i}")) for i in range(2)), return_exceptions=True
        )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert sum(isinstance(r, RequestRejected) for r in results) == 1


async def test_history_and_usage(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(user_concurrent_jobs=5), clock=clock) as core:
        core.notifier.register(RecordingSink())
        await core.service.submit(ask("ann", "a red fox"))
        await core.service.submit(ask("ann", "waves", Kind.VIDEO, "veo_fast"))
        await core.service.submit(ask("bob", "a blue whale"))
        for _ in range(10):
            await step(core, clock, 1.0)
        jobs = await core.service.history(who("ann"))
        assert history_text(jobs, core.catalog, clock.now()) == (
            "🕘 Your recent jobs here:\n"
            "1. Veo 3.1 Fast · succeeded · just now · “waves”\n"
            "2. Nano Banana · succeeded · just now · “a red fox”"
        )
        assert (await core.service.stored_result(jobs[1].id, who("ann"))).id == jobs[1].id
        assert usage_text(await core.service.usage(who("ann"))) == (
            "📊 Today you made 1 of 50 images and 1 of 10 videos here, spending $0.29.\n"
            "This chat has $9.67 of its $10.00 daily budget left.\n"
            "Limits reset at 00:00 UTC (in 11 h 59 min)."
        )
        with pytest.raises(
            RequestRejected, match=re.escape("Only this chat's admins can see everyone's usage.")
        ):
            await core.service.chat_usage(who("ann"), is_admin=False)
        assert chat_usage_text(await core.service.chat_usage(who("ann"), is_admin=True)) == (
            "📊 Today in this chat: 3 jobs, $0.33.\n1. Ann: 2 jobs, $0.29\n2. Bob: 1 job, $0.04"
        )


async def test_a_chats_own_concurrency_reaches_the_scheduler(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(
        build(chat_concurrent_jobs=5, user_concurrent_jobs=5), clock=clock
    ) as core:
        await core.service.change_setting(who("ann"), "chat_jobs_at_once", "1", is_admin=True)
        gw.script_next(duration=60)
        await core.service.submit(ask("ann", "one"))
        await step(core, clock)
        waiting = await core.service.submit(ask("bob", "two"))
        assert waiting.queue_position == 1
        await step(core, clock, 1)
        assert len(gw.create_calls()) == 1


BUDGET_RULE = (
    "chat_budget_usd takes an amount in USD from 0.01 to 100,000 with at most 2 decimals, "
    "or 0 for no budget, e.g. chat_budget_usd 12.50."
)


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        (
            "chat_jobs_at_once",
            "99999999999999999999",
            "chat_jobs_at_once takes a whole number from 1 to 100, e.g. chat_jobs_at_once 3.",
        ),
        (
            "chat_jobs_at_once",
            "0",
            "chat_jobs_at_once takes a whole number from 1 to 100, e.g. chat_jobs_at_once 3.",
        ),
        (
            "user_jobs_at_once",
            "-2",
            "user_jobs_at_once takes a whole number from 1 to 100, e.g. user_jobs_at_once 2.",
        ),
        (
            "user_images_per_day",
            "1e9",
            "user_images_per_day takes a whole number from 0 to 10,000, "
            "e.g. user_images_per_day 50.",
        ),
        (
            "user_videos_per_day",
            "10001",
            "user_videos_per_day takes a whole number from 0 to 10,000, "
            "e.g. user_videos_per_day 10.",
        ),
        (
            "user_videos_per_day",
            "2.5",
            "user_videos_per_day takes a whole number from 0 to 10,000, "
            "e.g. user_videos_per_day 10.",
        ),
        ("chat_budget_usd", "0.001", BUDGET_RULE),
        ("chat_budget_usd", "inf", BUDGET_RULE),
        ("chat_budget_usd", "$inf", BUDGET_RULE),
        ("chat_budget_usd", "nan", BUDGET_RULE),
        ("chat_budget_usd", "-5", BUDGET_RULE),
        ("chat_budget_usd", "1e300", BUDGET_RULE),
        ("chat_budget_usd", "100000.01", BUDGET_RULE),
        ("chat_budget_usd", "five", BUDGET_RULE),
    ],
)
async def test_a_setting_out_of_range_is_refused_with_the_range(
    build: Callable[..., Settings], clock: FakeClock, name: str, value: str, said: str
) -> None:
    async with open_core(build(), clock=clock) as core:
        before = rules_text(await core.service.rules(who("ann")))
        with pytest.raises(RequestRejected) as info:
            await core.service.change_setting(who("ann"), name, value, is_admin=True)
        assert info.value.message == said
        assert rules_text(await core.service.rules(who("ann"))) == before


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("chat_jobs_at_once", "100", "✅ chat_jobs_at_once: 100"),
        ("user_images_per_day", "0", "✅ user_images_per_day: 0"),
        ("chat_budget_usd", "0.01", "✅ chat_budget_usd: $0.01"),
        ("chat_budget_usd", "$100000", "✅ chat_budget_usd: $100000.00"),
        ("chat_budget_usd", ".5", "✅ chat_budget_usd: $0.50"),
        ("chat_budget_usd", "0", "✅ chat_budget_usd: no budget"),
    ],
)
async def test_a_setting_at_the_edge_of_its_range_is_taken(
    build: Callable[..., Settings], clock: FakeClock, name: str, value: str, said: str
) -> None:
    async with open_core(build(), clock=clock) as core:
        changed = await core.service.change_setting(who("ann"), name, value, is_admin=True)
        assert setting_changed_text(changed) == said


async def test_a_stored_value_out_of_range_falls_back_to_the_default(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    """Older versions saved any number: an infinite budget is not shown as "$inf"."""
    async with open_core(build(), clock=clock) as core:
        origin = who("ann")
        bad = {"chat_budget_usd": float("inf"), "user_jobs_at_once": 10**30, "video_confirm": True}
        await core.store.save_chat_settings(
            origin.platform, origin.scope_id, bad, by="old", now=clock.now()
        )
        text = rules_text(await core.service.rules(origin))
    assert "• chat_budget_usd: $10.00" in text and "$inf" not in text
    assert "• user_jobs_at_once: 2" in text and "• video_confirm: on" in text


async def test_buttons_act_only_in_their_jobs_chat_and_asker_only_ones_only_for_the_asker(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(video_needs_confirmation=True), clock=clock) as core:
        image = await core.service.submit(ask("ann", "a lamp"))
        held = await core.service.submit(ask("ann", "a paper boat", Kind.VIDEO, "veo"))
        for _ in range(10):
            await step(core, clock, 1.0)
        service, elsewhere = core.service, who("ann", chat="g2")
        other_chat = "That button is for a job from another chat, so it does nothing here."
        refused = [
            service.reroll(image.id, elsewhere),
            service.animate(image.id, elsewhere),
            service.upscale(image.id, elsewhere),
            service.stored_result(image.id, elsewhere),
            service.confirm(held.id, elsewhere),
            service.cancel(held.id, elsewhere),
        ]
        for call in refused:
            with pytest.raises(RequestRejected, match=re.escape(other_chat)):
                await call
        with pytest.raises(RequestRejected, match="Only the person who asked can get this"):
            await service.stored_result(image.id, who("bob"))
        assert (await service.stored_result(image.id, who("ann"))).id == image.id
        rerolled = await service.reroll(image.id, who("bob"))  # anyone in the chat; bob's
        assert rerolled.origin.user_id == "bob" and rerolled.parent_job_id == image.id
        assert len(await core.store.recent(20)) == 3  # refusals recorded nothing


async def test_a_request_key_makes_one_job_and_repeats_its_refusal(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(), clock=clock) as core:
        req = GenerationRequest(Kind.IMAGE, "a fox", who("ann"), request_key="test:g1:7")
        first = await core.service.submit(req)
        again = await core.service.submit(req)
        assert again.id == first.id
        empty = GenerationRequest(Kind.IMAGE, " ", who("ann"), request_key="test:g1:8")
        for _ in range(2):
            with pytest.raises(RequestRejected) as refused:
                await core.service.submit(empty)
            assert refused.value.code == "empty_prompt"
        assert len(await core.store.recent(20)) == 2  # one job, one refusal


async def test_after_a_failure_the_core_tells_whether_the_request_started_a_job(
    build: Callable[..., Settings],
    clock: FakeClock,
    gw: SandboxGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with open_core(build(), clock=clock) as core:
        assert await core.service.after_failure("test:g1:1") == NothingRecorded()
        empty = GenerationRequest(Kind.IMAGE, " ", who("ann"), request_key="test:g1:2")
        with pytest.raises(RequestRejected):
            await core.service.submit(empty)
        assert await core.service.after_failure("test:g1:2") == NothingRecorded()  # refused
        req = GenerationRequest(Kind.IMAGE, "a fox", who("ann"), request_key="test:g1:3")
        job = await core.service.submit(req)
        outcome = await core.service.after_failure("test:g1:3")
        assert isinstance(outcome, Recorded) and outcome.job.id == job.id

        async def broken(request_key: str) -> None:
            raise RuntimeError("the disk is full")

        monkeypatch.setattr(core.store, "find_request", broken)
        assert await core.service.after_failure("test:g1:3") == RecordUnknown()
