"""Creative sessions in the core, on each job store (a real SQLite file, a PostgreSQL schema:
the `database_url` fixture) and the sandbox gateway: starting and
its refusals, entries and the session's rules (budget with refunds, per person, videos),
remix chains, atomic votes, ending once (by command, by timer, after a restart, with two
processes on one file), the recap, the card and the gallery page. The platforms' SessionSink
is a recording double here; the adapters' own tests drive the fake Telegram and Discord."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

import pytest

from bot import messages
from bot.app import Core
from bot.config import Settings
from bot.errors import RequestRejected
from bot.main.wiring import open_core
from bot.models import Delivery, GenerationRequest, JobState, Kind, Origin
from bot.sessions import Recap, Session, SessionFigures
from tests.conftest import FakeClock, SandboxGateway, running  # the sandbox, wherever it lives
from tests.helpers import RecordingSink

CHAT = "g1"
NOON = 1_800_000_000.0 + 12 * 3600 - 1_800_000_000.0 % 86400  # 12:00 UTC


def who(user: str, chat: str = CHAT, thread: str | None = None) -> Origin:
    return Origin(
        platform="test", chat_id=chat, user_id=user, user_name=user.title(), thread_id=thread
    )


def ask(
    user: str,
    prompt: str = "a lighthouse in fog",
    kind: Kind = Kind.IMAGE,
    model: str | None = None,
    chat: str = CHAT,
) -> GenerationRequest:
    return GenerationRequest(kind=kind, prompt=prompt, origin=who(user, chat), model=model)


class RecordingSessionSink:
    """A SessionSink that remembers every card and recap (the adapters' twin for tests)."""

    def __init__(self, platform: str = "test", *, fail_recaps: int = 0) -> None:
        self.platform = platform
        self.cards: list[SessionFigures] = []
        self.recaps: list[Recap] = []
        self.fail_recaps = fail_recaps
        self.recapped = asyncio.Event()

    async def show_card(self, figures: SessionFigures) -> str | None:
        self.cards.append(figures)
        return f"card-{figures.session.id}" if figures.session.card_message_id is None else None

    async def post_recap(self, recap: Recap) -> None:
        from bot.errors import DeliveryError

        if self.fail_recaps:
            self.fail_recaps -= 1
            raise DeliveryError("the chat is having a bad day", retry_after=5.0)
        self.recaps.append(recap)
        self.recapped.set()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=NOON)


@pytest.fixture
async def gw(clock: FakeClock) -> AsyncIterator[SandboxGateway]:
    async with SandboxGateway(clock=clock.now, late_url_polls=0) as g:
        yield g


@pytest.fixture
def build(
    make_settings: Callable[..., Settings], gw: SandboxGateway, database_url: str
) -> Callable[..., Settings]:
    def settings(**kw: object) -> Settings:
        values: dict[str, object] = {"poll_first_delay_s": 1.0, "poll_interval_s": 1.0}
        values["database_url"] = database_url
        values["user_concurrent_jobs"] = 10
        values.update(kw)
        return make_settings(aa_base_url=gw.base_url, **values)

    return settings


async def step(core: Core, clock: FakeClock, seconds: float = 0.0, times: int = 1) -> None:
    """Move time and run the tracker and the notifier once (and again, `times` in all)."""
    for _ in range(times):
        clock.advance(seconds)
        await core.tracker.run_once()
        await core.tracker.drain()
        await core.notifier.run_once()
        await core.notifier.drain()


async def start(core: Core, text: str = "a city under the sea", user: str = "ann") -> Session:
    spec = core.sessions.parse_start(text)
    return await core.sessions.start(who(user), spec, is_admin=True)


async def refused(call: object) -> RequestRejected:
    assert asyncio.iscoroutine(call)
    with pytest.raises(RequestRejected) as info:
        await call
    return info.value


# -- starting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", messages.NO_THEME),
        ("--for 30m", messages.NO_THEME),
        ("sea --for 30s", "A session lasts at least 1 minute."),
        ("sea --for 8d", "A session lasts at most 7 days."),
        ("sea --for soon", "--for takes a duration from 1 minute to 7 days, like 90s, 30m, 2h or 1d."),
        ("sea --colour red", "There is no option “--colour”. Options: --for, --budget, --per-person, --video."),
        ("sea --budget", "--budget needs a value. --budget takes an amount in USD above 0, e.g. --budget 5 or --budget 2.50."),
        ("sea --budget 0", "--budget takes an amount in USD above 0, e.g. --budget 5 or --budget 2.50."),
        ("sea --per-person 0", "--per-person takes a whole number from 1 to 1,000, e.g. --per-person 5."),
        ("sea --video maybe", "--video takes on or off."),
        ("x" * 201, "That theme is too long; keep it under 200 characters."),
    ],
)  # fmt: skip
def test_start_options_are_refused_in_words(text: str, words: str) -> None:
    from bot.session_service import parse_start

    with pytest.raises(RequestRejected) as info:
        parse_start(text)
    assert info.value.message == words


def test_start_options_are_read() -> None:
    from bot.session_service import parse_start

    spec = parse_start("a city — under the sea --for 1h30m --budget $2.5 —per-person 3 --video=off")
    assert (spec.theme, spec.duration_s, spec.budget_usd) == ("a city — under the sea", 5400, 2.5)
    assert (spec.per_person, spec.video) == (3, False)
    plain = parse_start("well-known -5 things")
    assert (plain.theme, plain.duration_s, plain.budget_usd) == ("well-known -5 things", 1800, None)
    assert (plain.per_person, plain.video) == (None, True)
    assert parse_start("sea --for 90s").duration_s == 90
    assert parse_start("sea --for 2h").duration_s == 7200
    assert parse_start("sea --for 1d").duration_s == 86400
    assert parse_start("sea --for 45").duration_s == 45 * 60  # a bare number is minutes


async def test_who_may_start_and_one_session_per_place(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    async with open_core(build(chat_daily_budget_usd=2.5), clock=clock) as core:
        spec = core.sessions.parse_start("a city under the sea --for 90m")
        err = await refused(core.sessions.start(who("bob"), spec, is_admin=False))
        assert err.message == (
            "Only this chat's admins can start a session here. "
            "An admin can let everyone: /settings session_starters everyone."
        )
        await core.service.change_setting(who("ann"), "session_starters", "everyone", is_admin=True)
        err = await refused(
            core.sessions.start(
                who("bob"), core.sessions.parse_start("x --budget 3"), is_admin=False
            )
        )
        assert err.message == (
            "This chat's daily budget is $2.50, so a session's budget can be at most that."
        )
        session = await core.sessions.start(who("bob"), spec, is_admin=False)
        assert (session.theme, session.ends_at, session.started_by) == (
            spec.theme,
            NOON + 5400,
            "bob",
        )
        err = await refused(core.sessions.start(who("ann"), spec, is_admin=True))
        assert (
            err.message
            == "There is already a session here: “a city under the sea”, until 13:30 UTC."
        )
        # Another chat, and a thread of this one, are other places.
        await core.sessions.start(who("ann", "g2"), spec, is_admin=True)
        await core.sessions.start(who("ann", thread="t1"), spec, is_admin=True)
        clock.advance(5400)  # its time ran out (the loop has not run): a new one may start
        assert (await start(core, "the next one")).theme == "the next one"
        assert (await core.store.get_session(session.id)).ended_at == NOON + 5400  # type: ignore[union-attr]
        err = await refused(
            core.service.change_setting(who("ann"), "session_starters", "mods", is_admin=True)
        )
        assert err.message == "session_starters takes admins or everyone."


# -- entries and the session's rules ------------------------------------------------------------


async def test_entries_are_numbered_and_counted(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(), clock=clock) as core:
        before = await core.service.submit(ask("ann", "before it started"))
        session = await start(core)
        jobs = [await core.service.submit(ask(u)) for u in ("ann", "bob", "ann")]
        elsewhere = await core.service.submit(ask("cy", chat="g2"))
        entries = await core.sessions.entries(session.id)
        assert [(e.number, e.author_name, e.job.id) for e in entries] == [
            (1, "Ann", jobs[0].id),
            (2, "Bob", jobs[1].id),
            (3, "Ann", jobs[2].id),
        ]
        assert await core.sessions.entry_for_job(before.id) is None
        assert await core.sessions.entry_for_job(elsewhere.id) is None
        figures = await core.sessions.current(who("cy"))
        assert figures is not None
        assert (figures.entries, figures.people, figures.votes) == (3, 2, 0)
        assert figures.spent_usd == pytest.approx(0.12)  # the estimates while they run
        marks = await core.sessions.entry_numbers([before.id, jobs[1].id])
        assert marks == {jobs[1].id: ("a city under the sea", 2)}
        text = messages.history_text([jobs[1], before], core.catalog, clock.now(), marks)
        assert text.splitlines()[1:] == [
            "1. Nano Banana · received · just now · “a lighthouse in fog” · 🎨 #2 in “a city under the sea”",
            "2. Nano Banana · received · just now · “before it started”",
        ]  # fmt: skip
        assert await core.sessions.current(who("ann", "g3")) is None


async def test_session_budget_refuses_for_nothing_and_refunds_count_back(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(), clock=clock) as core:
        core.notifier.register(RecordingSink())
        await start(core, "storms --budget 1")
        gw.script_next(outcome="refunded")
        first = await core.service.submit(ask("ann", "a storm", Kind.VIDEO, "sora_studio"))  # $0.65
        err = await refused(core.service.submit(ask("bob", "a calm sea", Kind.VIDEO, "sora_fast")))
        assert err.message == (
            "This session's budget ($1.00) is spent. $0.35 is left, and this video costs "
            "about $0.65."
        )
        assert err.code == "limit_session_budget"
        refused_job = (await core.store.recent(1))[0]
        assert (refused_job.state, refused_job.error_code) == (
            JobState.REJECTED,
            "limit_session_budget",
        )
        assert await core.sessions.entry_for_job(refused_job.id) is None
        await step(core, clock, 1.0, times=12)
        assert (await core.store.get(first.id)).state is JobState.REFUNDED  # type: ignore[union-attr]
        second = await core.service.submit(ask("bob", "a calm sea", Kind.VIDEO, "sora_fast"))
        assert (await core.sessions.entry_for_job(second.id)).number == 2  # type: ignore[union-attr]
        figures = await core.sessions.current(who("ann"))
        assert figures is not None and figures.spent_usd == pytest.approx(0.65)
        err = await refused(core.service.submit(ask("cy", "more", Kind.VIDEO, "sora_fast")))
        assert (
            err.message
            == "This session's budget ($1.00) is spent. $0.35 is left, and this video costs about $0.65."
        )
        await step(core, clock, 1.0)  # the admitted one is sent
    assert len(gw.create_calls()) == 2  # the refused ones cost nothing


async def test_entries_per_person_and_videos_off(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(), clock=clock) as core:
        session = await start(core, "tiny worlds --per-person 2 --video off")
        await core.service.submit(ask("ann"))
        await core.service.submit(ask("ann"))
        err = await refused(core.service.submit(ask("ann")))
        assert err.message == "You have made 2 entries, this session's limit."
        assert err.code == "limit_session_per_person"
        err = await refused(core.service.submit(ask("bob", "waves", Kind.VIDEO, "veo_fast")))
        assert (err.message, err.code) == ("Videos are off in this session.", "limit_session_video")
        await core.service.precheck(ask("bob"))  # the same rules, nothing recorded
        err = await refused(core.service.precheck(ask("ann")))
        assert err.message == "You have made 2 entries, this session's limit."
        await core.service.submit(ask("bob"))
        assert len(await core.sessions.entries(session.id)) == 3
        await core.sessions.end(who("ann"), is_admin=False)
        await core.service.submit(ask("ann", "after the end"))  # no session: no session rule
    assert gw.requests == []


async def test_a_remix_of_an_entry_records_its_chain(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(), clock=clock) as core:
        core.notifier.register(RecordingSink())
        await start(core)
        first = await core.service.submit(ask("ann", "a paper boat"))
        err = await refused(core.service.remix_request(first.id, "at night", who("bob")))
        assert err.message == messages.NO_RESULT  # not finished yet
        await step(core, clock, 1.0, times=6)
        request = await core.service.remix_request(first.id, "the boat at night", who("bob"))
        assert (request.action, request.parent_job_id, request.model) == (
            "remix",
            first.id,
            "nanobanana",
        )
        assert len(request.images) == 1
        remix = await core.service.submit(request)
        entry = await core.sessions.entry_for_job(remix.id)
        assert entry is not None
        assert (entry.number, entry.remix_of, entry.remix_of_author) == (2, 1, "Ann")
        assert messages.entry_label(entry) == "#2 · remix of #1 by Ann"
        other = await core.service.submit(ask("cy", "a plain one"))
        plain = await core.sessions.entry_for_job(other.id)
        assert plain is not None and plain.remix_of is None
        assert messages.entry_label(plain) == "#3"
        video = await core.service.submit(ask("cy", "waves", Kind.VIDEO, "veo_fast"))
        await step(core, clock, 1.0, times=12)
        err = await refused(core.service.remix_request(video.id, "more waves", who("bob")))
        assert err.message == messages.ONLY_AN_IMAGE


# -- votes --------------------------------------------------------------------------------------


async def test_votes_are_atomic_toggle_and_refuse_own_entries_and_ended_sessions(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    async with open_core(build(), clock=clock) as core:
        await start(core)
        job = await core.service.submit(ask("ann"))
        outcomes = await asyncio.gather(
            *(core.sessions.vote(job.id, who(f"v{i}")) for i in range(100))
        )
        assert sorted(o.votes for o in outcomes) == list(range(1, 101))
        assert all(o.counted and o.entry == 1 for o in outcomes)
        again = await core.sessions.vote(job.id, who("v7"))
        assert (again.counted, again.votes) == (False, 99)
        assert messages.vote_text(again) == "Your vote for #1 is taken back (99 votes)."
        back = await core.sessions.vote(job.id, who("v7"))
        assert messages.vote_text(back) == "👍 Your vote for #1 counts (100 votes)."
        err = await refused(core.sessions.vote(job.id, who("ann")))
        assert err.message == "You can't vote for your own entry."
        err = await refused(core.sessions.vote(job.id, who("v1", "g2")))
        assert err.message == messages.OTHER_CHAT
        outside = await core.service.submit(ask("bob", chat="g2"))
        err = await refused(core.sessions.vote(outside.id, who("v1", "g2")))
        assert err.message == "That is not a session entry, so it takes no votes."
        figures = await core.sessions.current(who("ann"))
        assert figures is not None and figures.votes == 100
        await core.sessions.end(who("ann"), is_admin=False)
        err = await refused(core.sessions.vote(job.id, who("v200")))
        assert err.message == "That session (“a city under the sea”) has ended."
        assert (await core.sessions.entry_for_job(job.id)).votes == 100  # type: ignore[union-attr]


# -- ending and the recap -----------------------------------------------------------------------


async def test_end_by_command_once_and_one_recap(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    async with open_core(build(), clock=clock) as core:
        core.notifier.register(RecordingSink())
        sink = RecordingSessionSink()
        core.add_session_sink(sink)
        session = await start(core)
        made = [await core.service.submit(ask(u, f"boat {i}")) for i, u in enumerate("ab")]
        err = await refused(core.sessions.end(who("bob"), is_admin=False))
        assert err.message == "Only the person who started the session or an admin can end it."
        await core.sessions.vote(made[1].id, who("ann"))
        ends = await asyncio.gather(
            core.sessions.end(who("ann"), is_admin=False),
            core.sessions.end(who("cy"), is_admin=True),
            return_exceptions=True,
        )
        ended = [e for e in ends if isinstance(e, Session)]
        assert len(ended) == 1 and ended[0].ended_at == NOON and not ended[0].open
        (err,) = [e for e in ends if isinstance(e, RequestRejected)]
        assert (
            err.message
            == "There is no session running here. Start one with /session start <theme>."
        )
        assert messages.session_over_text(ended[0]) == (
            "🏁 The session “a city under the sea” has ended. Entries still running will "
            "finish and count; the recap follows."
        )
        await core.session_keeper.sessions_once()
        assert sink.recaps == []  # its entries are still running: their results count
        late = await core.service.submit(ask("cy", "too late"))
        assert await core.sessions.entry_for_job(late.id) is None
        await step(core, clock, 1.0, times=6)
        await asyncio.gather(*(core.session_keeper.sessions_once() for _ in range(3)))
        await core.session_keeper.sessions_once()
        (recap,) = sink.recaps
        assert [e.number for e in recap.top] == [2, 1]  # most votes first
        assert recap.gallery_url is None
        assert set(recap.files) == {1, 2} and all(recap.files.values())
        assert (await core.store.get_session(session.id)).recap_at is not None  # type: ignore[union-attr]
        assert messages.recap_text(recap) == (
            "🏁 The session “a city under the sea” is over!\n"
            "2 entries by 2 people, $0.08 spent.\n"
            "\n"
            "#2 by B: “boat 1” · 1 vote\n"
            "#1 by A: “boat 0” · 0 votes\n"
            "\n"
            f"Set PUBLIC_BASE_URL to get a gallery link, or run `genrelay sessions export {session.id} DIR`."
        )  # fmt: skip


async def test_two_cores_on_one_file_post_one_recap(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = build()
    async with open_core(settings, clock=clock) as one, open_core(settings, clock=clock) as two:
        sinks = [RecordingSessionSink(), RecordingSessionSink()]
        one.add_session_sink(sinks[0])
        two.add_session_sink(sinks[1])
        await start(one, "twins --for 5m")
        await asyncio.gather(one.session_keeper.sessions_once(), two.session_keeper.sessions_once())
        # The first card is claimed before it is posted: one process posts it.
        assert len(sinks[0].cards) + len(sinks[1].cards) == 1
        clock.advance(301)
        for _ in range(3):
            await asyncio.gather(
                one.session_keeper.sessions_once(), two.session_keeper.sessions_once()
            )
        assert len(sinks[0].recaps) + len(sinks[1].recaps) == 1
        posted = [c for s in sinks for c in s.cards if c.session.card_message_id is None]
        assert len(posted) == 1
        assert any(not s.cards[-1].session.open for s in sinks if s.cards)  # shows the end


async def test_end_by_timer_waits_for_its_entries_then_recaps_once(
    build: Callable[..., Settings], clock: FakeClock, gw: SandboxGateway
) -> None:
    async with open_core(build(public_base_url="https://relay.example"), clock=clock) as core:
        core.notifier.register(RecordingSink())
        sink = RecordingSessionSink(fail_recaps=1)
        core.add_session_sink(sink)
        session = await start(core, "quick sketches --for 2m")
        gw.durations["veo_fast"] = 3600.0  # still running when the session ends
        slow = await core.service.submit(ask("bob", "waves", Kind.VIDEO, "veo_fast"))
        await step(core, clock, 1.0, times=2)
        clock.advance(NOON + 120 - clock.now())  # its end
        await core.session_keeper.sessions_once()
        ended = await core.store.get_session(session.id)
        assert ended is not None and (ended.ended_at, ended.ended_by) == (NOON + 120, None)
        assert sink.recaps == []
        clock.advance(599)
        await core.session_keeper.sessions_once()
        assert sink.recaps == []
        clock.advance(1)  # ten minutes after the end: the recap goes without the slow one
        await core.session_keeper.sessions_once()  # the chat refuses it once: tried again
        assert sink.recaps == []
        clock.advance(4)
        await core.session_keeper.sessions_once()
        assert sink.recaps == []
        clock.advance(1)
        await core.session_keeper.sessions_once()
        (recap,) = sink.recaps
        assert recap.top == () and recap.figures.entries == 1
        assert recap.gallery_url == f"https://relay.example/sessions/{session.gallery_key}"
        assert core.sessions.gallery_url(session) == recap.gallery_url
        assert messages.recap_text(recap).endswith(
            f"Nothing was made this time.\n\n🖼 Every entry of “quick sketches”: {recap.gallery_url}"
        )
        assert (await core.store.get(slow.id)).state is not JobState.SUCCEEDED  # type: ignore[union-attr]
        await core.session_keeper.sessions_once()
        assert len(sink.recaps) == 1


async def test_a_session_that_ended_while_down_closes_and_recaps_on_start(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = build()
    async with open_core(settings, clock=clock) as core:
        await start(core, "overnight --for 1h")
        job = await core.service.submit(ask("bob"))
        await core.sessions.vote(job.id, who("cy"))
    clock.advance(3 * 3600)  # the process was down meanwhile
    async with open_core(settings, clock=clock) as core, running(core):
        core.notifier.register(RecordingSink())
        sink = RecordingSessionSink()
        core.add_session_sink(sink)
        async with asyncio.timeout(20):
            while not sink.recaps:
                clock.advance(1.0)
                core.tracker.wake()
                await asyncio.sleep(0.05)
        (recap,) = sink.recaps
        assert recap.figures.session.ended_at == NOON + 3600
        assert [(e.number, e.votes) for e in recap.top] == [(1, 1)]
        done = await core.store.get(job.id)
        assert done is not None and done.delivery is Delivery.DELIVERED
        assert sink.cards == []  # it ended before it had a card: the recap is enough


async def test_the_card_is_coalesced_and_shows_the_end(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    async with open_core(build(), clock=clock) as core:
        sink = RecordingSessionSink()
        await start(core, "moons --for 30m --budget 5 --per-person 3 --video off")
        await core.session_keeper.sessions_once()
        assert sink.cards == []  # no sink for its platform here: nothing shown, nothing lost
        core.add_session_sink(sink)
        keeper = core.session_keeper
        await keeper.sessions_once()
        (card,) = sink.cards
        assert messages.session_card_text(card, clock.now()) == (
            "🎨 Session: “moons”\n"
            "⏳ 30 min left (until 12:30 UTC)\n"
            "🖼 0 entries by 0 people · 0 votes · $0.00 spent\n"
            "Rules: $5.00 budget · 3 entries per person · no videos.\n"
            "Every /imagine and /video here is an entry; vote with the button under each."
        )
        job = await core.service.submit(ask("bob"))
        await core.sessions.vote(job.id, who("cy"))
        clock.advance(5)
        await keeper.sessions_once()
        assert len(sink.cards) == 1  # changed, but the card was shown 5 s ago
        clock.advance(5)
        await keeper.sessions_once()
        assert len(sink.cards) == 2
        card = sink.cards[-1]
        assert card.session.card_message_id == f"card-{card.session.id}"  # edits the posted one
        assert (card.entries, card.people, card.votes) == (1, 1, 1)
        clock.advance(30)
        await keeper.sessions_once()
        assert len(sink.cards) == 2  # only the time left changed, 30 s ago
        clock.advance(30)
        await keeper.sessions_once()
        assert len(sink.cards) == 3
        assert "⏳ 29 min left (until 12:30 UTC)" in messages.session_card_text(
            sink.cards[-1], clock.now()
        )
        await core.sessions.end(who("ann"), is_admin=True)
        clock.advance(10)
        await keeper.sessions_once()
        assert messages.session_card_text(sink.cards[-1], clock.now()) == (
            "🎨 Session: “moons”\n"
            "🏁 Ended at 12:01 UTC\n"
            "🖼 1 entry by 1 person · 1 vote · $0.04 spent"
        )
        clock.advance(600)
        await keeper.sessions_once()
        assert len(sink.cards) == 4  # the end was shown: no more updates


# -- the gallery --------------------------------------------------------------------------------


async def test_gallery_page_lists_made_entries_newest_first_with_their_files(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    async with open_core(build(), clock=clock) as core:
        core.notifier.register(RecordingSink())
        session = await start(core)
        first = await core.service.submit(ask("ann", "a red kite"))
        await core.service.submit(ask("bob", "a blue kite"))
        await step(core, clock, 1.0, times=6)
        remix = await core.service.submit(
            await core.service.remix_request(first.id, "the kite at dusk", who("cy"))
        )
        await step(core, clock, 1.0, times=6)
        await core.sessions.vote(remix.id, who("ann"))
        cancelled = await core.service.submit(ask("ann", "never mind"))
        await core.service.cancel(cancelled.id, who("ann"))
        page = await core.sessions.gallery_page(session.gallery_key)
        assert page is not None
        assert [(e.number, e.author_name, e.job.prompt) for e in page.entries] == [
            (3, "Cy", "the kite at dusk"),
            (2, "Bob", "a blue kite"),
            (1, "Ann", "a red kite"),
        ]
        assert (
            page.entries[0].remix_of,
            page.entries[0].remix_of_author,
            page.entries[0].votes,
        ) == (1, "Ann", 1)
        assert (page.figures.entries, page.figures.people, page.figures.votes) == (3, 3, 1)
        for entry in page.entries:
            (name,) = page.files[entry.number]
            assert (core.media.results_dir / name).is_file()
            assert name.startswith(entry.job.id)
        assert await core.sessions.gallery_page("no-such-key") is None
        by_id = await core.sessions.gallery_page_by_id(session.id)
        assert by_id is not None and by_id.entries == page.entries
        listed = await core.sessions.list_sessions()
        assert [(f.session.id, f.entries) for f in listed] == [(session.id, 3)]
        assert messages.entry_credit(page.entries[0]) == (
            "#3 by Cy: “the kite at dusk” · 1 vote · remix of #1 by Ann"
        )


async def test_gallery_files_go_gallery_keep_days_after_the_session_ended(
    build: Callable[..., Settings], clock: FakeClock
) -> None:
    async with open_core(build(gallery_keep_days=1), clock=clock) as core:
        core.notifier.register(RecordingSink())
        session = await start(core)
        await core.service.submit(ask("ann", "a red kite"))
        await step(core, clock, 1.0, times=6)
        page = await core.sessions.gallery_page(session.gallery_key)
        assert page is not None
        (name,) = page.files[1]
        kept = core.media.results_dir / name
        other = core.media.results_dir / "zzzzzzzzzz-0.png"  # no session's: never touched
        other.write_bytes(b"x")
        await core.sessions.end(who("ann"), is_admin=False)
        os.utime(kept, (clock.now(), clock.now()))  # written when the session ran
        assert await core.sessions.prune_galleries(clock.now() + 86400 - 60) == 0
        assert kept.is_file()
        assert await core.sessions.prune_galleries(clock.now() + 86400 + 60) == 1
        assert not kept.exists() and other.is_file()
        page = await core.sessions.gallery_page(session.gallery_key)
        assert page is not None and page.files.get(1, ()) == ()  # a placeholder now


# -- words --------------------------------------------------------------------------------------


def _figures(**session: object) -> SessionFigures:
    values: dict[str, object] = {
        "id": "k3f9abcd",
        "gallery_key": "key",
        "platform": "test",
        "chat_id": CHAT,
        "thread_id": None,
        "scope_id": CHAT,
        "theme": "paper   cities",
        "started_by": "ann",
        "started_by_name": "Ann",
        "started_at": NOON,
        "ends_at": NOON + 3 * 86400 + 5400,
        "budget_usd": None,
        "per_person": 1,
        "video": True,
    }
    values.update(session)
    return SessionFigures(Session(**values), entries=1, people=1, spent_usd=0.04, votes=1)  # type: ignore[arg-type]


def test_session_words_for_long_sessions_and_single_figures() -> None:
    figures = _figures()
    assert messages.session_card_text(figures, NOON) == (
        "🎨 Session: “paper cities”\n"
        "⏳ 3 d 1 h left (until 18 Jan 13:30 UTC)\n"
        "🖼 1 entry by 1 person · 1 vote · $0.04 spent\n"
        "Rules: 1 entry per person.\n"
        "Every /imagine and /video here is an entry; vote with the button under each."
    )
    assert messages.session_exists_text(figures.session, NOON) == (
        "There is already a session here: “paper cities”, until 18 Jan 13:30 UTC."
    )
    short = _figures(ends_at=NOON + 7200, per_person=None)
    assert "⏳ 2 h left (until 14:00 UTC)" in messages.session_card_text(short, NOON)
    assert "Rules: the chat's usual limits." in messages.session_card_text(short, NOON)
    assert "⏳ 1 min left" in messages.session_card_text(short, NOON + 7199)
    assert messages.recap_figures_text(figures) == "1 entry by 1 person, $0.04 spent."
    assert messages.recap_headline(figures.session) == "🏁 The session “paper cities” is over!"
    assert messages.no_gallery_hint(figures.session) == (
        "Set PUBLIC_BASE_URL to get a gallery link, or run `genrelay sessions export k3f9abcd DIR`."
    )
    assert messages.gallery_link_text(figures.session, "https://x.example/sessions/key") == (
        "🖼 Every entry of “paper cities”: https://x.example/sessions/key"
    )
    assert messages.history_mark("paper cities", 4) == "🎨 #4 in “paper cities”"
    assert messages.NO_SESSION == (
        "There is no session running here. Start one with /session start <theme>."
    )


def test_the_session_starters_setting_is_shown_with_the_others(settings: Settings) -> None:
    from bot.community import ChatRules

    rules = ChatRules.defaults(settings)
    assert rules.session_starters == "admins"
    assert messages.rules_text(rules).splitlines()[-2] == "• session_starters: admins"
    assert rules.merged({"session_starters": "everyone"}).session_starters == "everyone"
    assert rules.merged({"session_starters": "nobody"}).session_starters == "admins"
