"""Creative sessions on Discord, end to end: real discord.py inside DiscordAdapter against the
fake Discord, a real core on SQLite (its clock a test can move), and the sandbox as the
gateway. A session is started, people make entries, remix and vote (100 at once too), it
ends by command, by its timer, after a restart, in a thread of its own; the card, the
labels, the counts, the recap, and every refusal are checked as Discord shows them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

from adapters.discord import DiscordAdapter, sync_commands
from adapters.discord.parse import SessionOptions
from adapters.discord.texts import (
    HELP_TEXT,
    NO_GALLERY_HERE_TEXT,
    REMIX_PLACEHOLDER,
    REMIX_PROMPT_LABEL,
    THREAD_FAILED_TEXT,
    THREAD_IN_THREAD_TEXT,
    card_placeholder_text,
    entry_note,
    no_thread_permission_text,
    remix_title,
    session_started_text,
    thread_name,
    vote_label,
)
from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.messages import (
    NO_SESSION,
    NOT_ENDER,
    OWN_ENTRY,
    VIDEOS_OFF,
    entry_credit,
    gallery_link_text,
    history_mark,
    not_starter_text,
    recap_text,
    session_card_text,
    session_ended_text,
    session_exists_text,
    session_over_text,
    vote_text,
)
from bot.models import Job, JobState, Origin
from bot.sessions import Entry, Session, VoteOutcome
from sandbox import SandboxGateway
from tests.conftest import running
from tests.fakes.discord_api import (
    CREATE_PUBLIC_THREADS,
    EVERYONE_PERMISSIONS,
    MANAGE_GUILD,
    PIN_MESSAGES,
    FakeDiscord,
    FakeInteraction,
)
from tests.test_discord import (
    APP_ID,
    CHAN,
    EPHEMERAL,
    GUILD,
    THREAD,
    TOKEN,
    Clock,
    custom_ids,
    delivered,
    job_for,
    labels,
    original,
    until,
)
from tests.test_discord_community import CoreClock

ALICE, BOB, CAROL, DAVE = 5000, 5001, 5002, 5003  # Carol has Manage Server
GUILD2, CHAN2 = 1001, 2100  # a server where the bot may neither pin nor open threads
LOADING = 1 << 7
COMMAND = "session"


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
        fd.add_guild(GUILD, "studio", channels=[CHAN], threads=[(THREAD, CHAN)])
        fd.grant(GUILD, CAROL, MANAGE_GUILD)
        fd.grant(GUILD, APP_ID, PIN_MESSAGES)
        fd.add_guild(
            GUILD2,
            "attic",
            channels=[CHAN2],
            everyone_permissions=EVERYONE_PERMISSIONS & ~CREATE_PUBLIC_THREADS,
        )
        fd.grant(GUILD2, CAROL, MANAGE_GUILD)
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
            **overrides,
        )

    return settings


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, core_clock: CoreClock
) -> AsyncIterator[tuple[Core, DiscordAdapter]]:
    """One process; the commands synced first, so options arrive typed as Discord types them."""
    assert await sync_commands(settings, guild_id=None) == 0
    async with (
        open_core(settings, clock=core_clock) as core,
        DiscordAdapter(core, settings, guild_ready_timeout=0.05) as adapter,
        running(core),
    ):
        yield core, adapter


# -- helpers -------------------------------------------------------------------------------


async def session(
    fake: FakeDiscord,
    user: int,
    sub: str,
    *,
    channel: int = CHAN,
    guild: int = GUILD,
    **options: Any,
) -> FakeInteraction:
    return await fake.slash(
        COMMAND, subcommand=sub, guild_id=guild, channel_id=channel, user_id=user, options=options
    )


async def imagine(
    fake: FakeDiscord, user: int, prompt: str, *, channel: int = CHAN, command: str = "imagine"
) -> FakeInteraction:
    return await fake.slash(
        command, guild_id=GUILD, channel_id=channel, user_id=user, options={"prompt": prompt}
    )


async def private(fake: FakeDiscord, rec: FakeInteraction) -> str:
    """An answer only its asker sees: a message, or a private "thinking…" that became it."""
    await fake.wait_for(lambda: rec.acknowledged)
    if rec.response_type == 4:
        assert rec.callbacks[0]["data"]["flags"] & EPHEMERAL
        return str(rec.callbacks[0]["data"]["content"])
    assert rec.response_type == 5 and rec.callbacks[0]["data"]["flags"] & EPHEMERAL
    answer = await fake.wait_for(
        lambda: (m := fake.original_response(rec.token)) and not m["flags"] & LOADING and m
    )
    return str(answer["content"])


async def public(fake: FakeDiscord, rec: FakeInteraction) -> dict[str, Any]:
    await fake.wait_for(lambda: rec.acknowledged)
    assert rec.response_type == 4
    message = original(fake, rec)
    assert not message["flags"] & EPHEMERAL
    return message


async def start(
    fake: FakeDiscord, core: Core, user: int = CAROL, **options: Any
) -> tuple[Session, str]:
    """A session started here: it, and the starter's private answer."""
    rec = await session(fake, user, "start", **{"theme": "foxes in the snow", **options})
    said = await private(fake, rec)
    figures = await core.sessions.current(here(rec.channel_id))
    assert figures is not None
    return figures.session, said


def here(channel: int, *, thread: bool = False) -> Origin:
    """Someone in this channel (or thread), as the core sees a place."""
    return Origin(
        platform="discord",
        chat_id=str(channel),
        user_id=str(DAVE),
        thread_id=str(channel) if thread else None,
        guild_id=str(GUILD),
    )


def cards(fake: FakeDiscord, channel: int = CHAN) -> list[dict[str, Any]]:
    """The bot's own messages (not interaction answers) that are session cards."""
    return [
        m
        for m in fake.channel_messages(channel, include_interactions=False)
        if m["type"] == 0 and m["content"].startswith(("🎨 Session:", "🎨 Starting a session"))
    ]


async def card_says(
    fake: FakeDiscord, core: Core, s: Session, *, channel: int = CHAN
) -> dict[str, Any]:
    """The session's card once it shows the session's figures as stored now."""

    async def check() -> dict[str, Any] | None:
        figures = await core.store.session_figures(s.id)
        assert figures is not None
        want = session_card_text(figures, core.clock.now())
        core.session_keeper.wake()
        found = [m for m in cards(fake, channel) if m["content"] == want]
        return found[0] if found else None

    return await until(check)


async def card_kept(core: Core, session_id: str) -> str | None:
    """The session's card id, once the core stored it."""
    s = await core.sessions.get(session_id)
    return s.card_message_id if s is not None else None


async def entry(core: Core, job: Job) -> Entry:
    found = await core.sessions.entry_for_job(job.id)
    assert found is not None
    return found


def button(message: dict[str, Any], action: str) -> dict[str, Any]:
    (found,) = [
        c
        for row in message["components"]
        for c in row["components"]
        if c["custom_id"].startswith(f"genrelay:{action}:")
    ]
    return found


async def vote(
    fake: FakeDiscord, message: dict[str, Any], user: int, *, channel: int = CHAN
) -> FakeInteraction:
    return await fake.press(
        button(message, "vt")["custom_id"],
        message_id=message["id"],
        guild_id=GUILD,
        channel_id=channel,
        user_id=user,
    )


async def count_shows(fake: FakeDiscord, adapter: DiscordAdapter, message_id: str, n: int) -> None:
    """Until the entry's vote button shows `n` (the edit follows the presser's answer)."""

    def check() -> bool:
        message = fake.message(message_id)
        return message is not None and button(message, "vt")["label"] == vote_label(n)

    try:
        await fake.wait_for(check, timeout=10)
    except TimeoutError:
        message = fake.message(message_id)
        shown = message and button(message, "vt")["label"]
        raise AssertionError(f"the count shows {shown!r}, not {n}") from None


def recaps(fake: FakeDiscord, channel: int = CHAN) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.channel_messages(channel, include_interactions=False)
        if m["content"].startswith("🏁 The session")
    ]


# -- the words -----------------------------------------------------------------------------


def test_the_session_options_in_the_shared_grammar() -> None:
    assert SessionOptions("foxes").text() == "foxes"
    full = SessionOptions("foxes at dawn", "1 h", 2.5, 3, False, True)
    assert full.text() == "foxes at dawn --for 1h --budget 2.5 --per-person 3 --video off"
    assert SessionOptions("x", budget=5.0, video=True).text() == "x --budget 5 --video on"


def test_the_discord_words_of_sessions() -> None:
    s = Session(
        id="k3f9abcd",
        gallery_key="key",
        platform="discord",
        chat_id=str(CHAN),
        thread_id=None,
        scope_id=str(GUILD),
        theme="  foxes\nin   snow ",
        started_by=str(CAROL),
        started_by_name="carol",
        started_at=1_900_000_000.0,
        ends_at=1_900_001_800.0,
        budget_usd=None,
        per_person=None,
        video=True,
    )
    assert session_started_text(s) == (
        "🎨 Your session “foxes in snow” has started: every /imagine and /video here is an "
        "entry until <t:1900001800:t> (<t:1900001800:R>). Its card is in the channel."
    )
    assert session_started_text(s, thread_id="77") == (
        "🎨 Your session “foxes in snow” has started in <#77>: every /imagine and /video "
        "there is an entry until <t:1900001800:t> (<t:1900001800:R>). Its card is above the "
        "thread."
    )
    assert card_placeholder_text(s.theme) == "🎨 Starting a session: “foxes in snow”…"
    assert thread_name(s.theme) == "🎨 foxes in snow"
    assert len(thread_name("x" * 300)) == 100
    assert remix_title(3) == "Remix #3" and remix_title(None) == "Remix this image"
    assert len(remix_title(10**9)) <= 45 and len(REMIX_PROMPT_LABEL) <= 45
    assert len(REMIX_PLACEHOLDER) <= 100
    assert vote_label(0) == "0" and vote_label(12) == "12"
    assert no_thread_permission_text(["Create Public Threads"]) == (
        "I can't open a thread for the session here: I'm missing Create Public Threads. Ask a "
        "server admin to give it to me, or start the session without `thread`."
    )
    assert "`/session start" in HELP_TEXT and "`/session gallery`" in HELP_TEXT
    assert len(HELP_TEXT) <= 2000


# -- the commands --------------------------------------------------------------------------


async def test_the_session_commands_are_registered(
    fake: FakeDiscord, build: Callable[..., Settings]
) -> None:
    assert await sync_commands(build(), guild_id=GUILD) == 0
    commands = {c["name"]: c for c in fake.registered_commands(GUILD)}
    subs = {o["name"]: o for o in commands[COMMAND]["options"]}
    assert list(subs) == ["start", "end", "show", "gallery"]
    assert {o["type"] for o in subs.values()} == {1}
    options = {o["name"]: o for o in subs["start"]["options"]}
    assert {n: o["type"] for n, o in options.items()} == {
        "theme": 3,
        "duration": 3,
        "budget": 10,
        "per_person": 4,
        "video": 5,
        "thread": 5,
    }
    assert options["theme"]["required"] and options["duration"]["autocomplete"]
    assert not any(o.get("required") for n, o in options.items() if n != "theme")


async def test_what_the_options_offer_as_they_are_typed(
    fake: FakeDiscord, build: Callable[..., Settings], core_clock: CoreClock
) -> None:
    async with serving(build(), core_clock):

        async def complete(command: str, sub: str, focused: str, typed: str, **given: Any) -> Any:
            rec = await fake.autocomplete(
                command,
                subcommand=sub,
                focused=focused,
                value=typed,
                options=given,
                guild_id=GUILD,
                channel_id=CHAN,
                user_id=CAROL,
            )
            await fake.wait_for(lambda: rec.acknowledged)
            return [(c["name"], c["value"]) for c in rec.autocomplete_choices or []]

        assert await complete(COMMAND, "start", "duration", "") == [
            ("15m — 15 minutes", "15m"),
            ("30m — 30 minutes", "30m"),
            ("1h — 1 hour", "1h"),
            ("2h — 2 hours", "2h"),
            ("1d — 1 day", "1d"),
        ]
        assert [v for _, v in await complete(COMMAND, "start", "duration", "hour")] == [
            "1h",
            "2h",
        ]
        starters = await complete("settings", "set", "value", "", name="session_starters")
        assert [v for _, v in starters] == ["admins", "everyone"]


async def test_a_session_from_start_to_recap(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(), core_clock) as (core, adapter):
        s, said = await start(fake, core, budget=5.0)
        assert said == session_started_text(s)
        assert (s.chat_id, s.thread_id, s.scope_id) == (str(CHAN), None, str(GUILD))
        card = await card_says(fake, core, s)
        await fake.wait_for(lambda: fake.pins(CHAN) == [card["id"]])  # the bot may pin here

        # Entries by several people, each labelled, with ❤️ 0 and Remix under it.
        fox_rec = await imagine(fake, ALICE, "a red fox")
        owl_rec = await imagine(fake, BOB, "a snowy owl")
        fox, owl = await delivered(core, fox_rec), await delivered(core, owl_rec)
        fox_entry, owl_entry = await entry(core, fox), await entry(core, owl)
        assert (fox_entry.number, owl_entry.number) == (1, 2)
        fox_msg = original(fake, fox_rec)
        assert fox_msg["content"] == entry_note(fox_entry) == "🎨 #1"
        assert labels(fox_msg) == ["Reroll", "Animate", "4K", "0", "Remix"]
        assert button(fox_msg, "vt")["emoji"]["name"] == "❤️"
        assert button(fox_msg, "rx")["emoji"]["name"] == "🎨"
        assert custom_ids(fox_msg)[-2:] == [f"genrelay:vt:{fox.id}", f"genrelay:rx:{fox.id}"]

        # Votes: counted, taken back, counted again; one's own entry refused.
        first = await vote(fake, fox_msg, BOB)
        assert await private(fake, first) == vote_text(VoteOutcome(1, True, 1))
        await count_shows(fake, adapter, fox_msg["id"], 1)
        again = await vote(fake, fox_msg, BOB)
        assert await private(fake, again) == vote_text(VoteOutcome(1, False, 0))
        await count_shows(fake, adapter, fox_msg["id"], 0)
        await private(fake, await vote(fake, fox_msg, BOB))
        await private(fake, await vote(fake, fox_msg, CAROL))
        await count_shows(fake, adapter, fox_msg["id"], 2)
        own = await vote(fake, fox_msg, ALICE)
        assert await private(fake, own) == OWN_ENTRY

        # Remix: the button asks for a prompt; the new entry keeps the chain.
        remix = await fake.press(
            button(original(fake, owl_rec), "rx")["custom_id"],
            message_id=original(fake, owl_rec)["id"],
            guild_id=GUILD,
            channel_id=CHAN,
            user_id=CAROL,
        )
        await fake.wait_for(lambda: remix.acknowledged)
        assert remix.modal is not None and remix.modal["title"] == remix_title(2)
        (field,) = remix.modal["components"]
        assert field["label"] == REMIX_PROMPT_LABEL
        assert field["component"]["placeholder"] == REMIX_PLACEHOLDER
        submit = await fake.submit_modal(remix, {"prompt": "the owl at night"})
        remixed = await delivered(core, submit)
        assert remixed.state is JobState.SUCCEEDED and remixed.parent_job_id == owl.id
        assert remixed.origin.user_id == str(CAROL) and remixed.prompt == "the owl at night"
        remix_entry = await entry(core, remixed)
        assert (remix_entry.number, remix_entry.remix_of) == (3, 2)
        assert original(fake, submit)["content"] == "🎨 #3 · remix of #2 by bob"
        assert submit.callbacks[0]["type"] == 5  # a public "thinking…", its status

        # /history marks entries; /session show says how it stands, privately.
        history = await fake.slash("history", guild_id=GUILD, channel_id=CHAN, user_id=BOB)
        assert history_mark(s.theme, 2) in await private(fake, history)
        figures = await core.store.session_figures(s.id)
        assert figures is not None and (figures.entries, figures.people) == (3, 3)
        shown = await private(fake, await session(fake, ALICE, "show"))
        assert shown == session_card_text(figures, core.clock.now())
        core_clock.advance(11)  # the card is updated at most every 10 s
        assert (await card_says(fake, core, s))["id"] == card["id"]
        assert len(cards(fake)) == 1

        # The end, by its starter: said publicly; votes refused; one recap.
        ended = await session(fake, CAROL, "end")
        over = await public(fake, ended)
        closed = await core.sessions.get(s.id)
        assert closed is not None and over["content"] == session_over_text(closed)
        late = await vote(fake, fox_msg, DAVE)
        assert await private(fake, late) == session_ended_text(s.theme)
        (recap,) = await fake.wait_for(lambda: recaps(fake))
        core_clock.advance(11)  # the card's next update is due
        final = await card_says(fake, core, closed)
        assert final["id"] == card["id"] and "🏁 Ended at" in final["content"]
        await fake.wait_for(lambda: fake.pins(CHAN) == [])  # pinned while the session runs
        summary = await core.sessions.recap(closed)
        await core.session_keeper.sessions_once()  # nothing more to post

    assert recap["content"] == recap_text(summary)
    names = [a["filename"] for a in recap["attachments"]]
    assert (
        names
        == [f"entry-{e.number}.png" for e in summary.top]
        == [
            "entry-1.png",
            "entry-2.png",
            "entry-3.png",
        ]
    )
    assert [a["description"] for a in recap["attachments"]] == [
        entry_credit(e) for e in summary.top
    ]
    files = fake.message_files(recap)
    assert [e.job.id for e in summary.top] == [fox.id, owl.id, remixed.id]  # most votes first
    assert files[0][1] == (build().data_dir / "results" / f"{fox.id}-0.png").read_bytes()
    assert recap["embeds"] == []
    assert len(recaps(fake)) == 1
    assert gallery_link_text(closed, None) in recap["content"]  # no PUBLIC_BASE_URL: the hint


async def test_the_gallery_link_again(
    fake: FakeDiscord, build: Callable[..., Settings], core_clock: CoreClock
) -> None:
    settings = build(public_base_url="https://relay.example")
    async with serving(settings, core_clock) as (core, _):
        none = await session(fake, BOB, "gallery")
        assert await private(fake, none) == NO_GALLERY_HERE_TEXT
        s, _ = await start(fake, core)
        url = core.sessions.gallery_url(s)
        assert url is not None and url.startswith("https://relay.example/sessions/")
        link = await public(fake, await session(fake, BOB, "gallery"))
        assert link["content"] == gallery_link_text(s, url)
        await public(fake, await session(fake, CAROL, "end"))
        later = await public(fake, await session(fake, ALICE, "gallery"))  # the last one here
        assert later["content"] == gallery_link_text(s, url)


# -- refusals ------------------------------------------------------------------------------


async def test_refusals_are_private_and_cost_nothing(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(), core_clock) as (core, _):
        assert await private(fake, await session(fake, ALICE, "end")) == NO_SESSION
        assert await private(fake, await session(fake, ALICE, "show")) == NO_SESSION
        short = await session(fake, CAROL, "start", theme="foxes", duration="20s")
        assert await private(fake, short) == "A session lasts at least 1 minute."
        long_ = await session(fake, CAROL, "start", theme="foxes", duration="8d")
        assert await private(fake, long_) == "A session lasts at most 7 days."
        cheap = await session(fake, CAROL, "start", theme="foxes", budget=0.001)
        assert await private(fake, cheap) == (
            "--budget takes an amount in USD above 0, e.g. --budget 5 or --budget 2.50."
        )
        guest = await session(fake, BOB, "start", theme="foxes")
        assert await private(fake, guest) == not_starter_text()
        for rec in (short, long_, cheap, guest):
            assert [cb["type"] for cb in rec.callbacks] == [4]  # the first answer, private
        assert await core.sessions.list_sessions() == []

        s, _ = await start(fake, core, per_person=1, video=False)
        twice = await session(fake, CAROL, "start", theme="owls")
        assert await private(fake, twice) == session_exists_text(s, core.clock.now())
        assert await private(fake, await session(fake, ALICE, "end")) == NOT_ENDER

        made = await delivered(core, await imagine(fake, ALICE, "a red fox"))
        assert made.state is JobState.SUCCEEDED
        over = await imagine(fake, ALICE, "another fox")
        assert await private(fake, over) == "You have made 1 entry, this session's limit."
        film = await imagine(fake, BOB, "a fox running", command="video")
        assert await private(fake, film) == VIDEOS_OFF
        refused = [await job_for(core, rec) for rec in (over, film)]
        assert {j.state for j in refused} == {JobState.REJECTED}
        assert [c.json["prompt"] for c in sandbox.create_calls()] == ["a red fox"]
        assert len(cards(fake)) == 1


# -- 100 people at once --------------------------------------------------------------------


async def test_a_hundred_votes_at_once_count_a_hundred(
    fake: FakeDiscord, build: Callable[..., Settings], core_clock: CoreClock
) -> None:
    fake.callback_window = 30.0  # this counts votes; answering within 3 s is tested elsewhere
    async with serving(build(), core_clock) as (core, adapter):
        await start(fake, core)
        rec = await imagine(fake, ALICE, "a red fox")
        fox = await delivered(core, rec)
        message = original(fake, rec)
        voters = range(6000, 6100)
        presses = await asyncio.gather(*(vote(fake, message, v) for v in voters))
        answers = await asyncio.gather(*(private(fake, p) for p in presses))
        assert all(a.startswith("👍 Your vote for #1 counts (") for a in answers)
        assert sorted(answers) == sorted(vote_text(VoteOutcome(1, True, n)) for n in range(1, 101))
        assert (await entry(core, fox)).votes == 100
        await count_shows(fake, adapter, message["id"], 100)
        await adapter.sessions.votes.idle()
        edits = fake.find_requests("PATCH", f"/channels/{CHAN}/messages/{message['id']}")
        assert 0 < len(edits) < 50  # coalesced: a burst is not edited press by press


# -- the timer, and a restart ---------------------------------------------------------------


async def test_the_timer_ends_it_and_a_restart_keeps_card_timer_and_votes(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    settings = build()
    async with serving(settings, core_clock) as (core, adapter):
        s, _ = await start(fake, core, duration="30m")
        card = await card_says(fake, core, s)
        rec = await imagine(fake, ALICE, "a red fox")
        fox = await delivered(core, rec)
        message = original(fake, rec)
        await private(fake, await vote(fake, message, BOB))
        await count_shows(fake, adapter, message["id"], 1)

    async with serving(settings, core_clock) as (core, adapter):  # a new process, same file
        await private(fake, await vote(fake, message, CAROL))
        await count_shows(fake, adapter, message["id"], 2)
        again = await vote(fake, message, BOB)  # Bob's vote from before the restart counts
        assert await private(fake, again) == vote_text(VoteOutcome(1, False, 1))
        core_clock.advance(11)
        assert (await card_says(fake, core, s))["id"] == card["id"]  # the same card, edited
        await delivered(core, await imagine(fake, BOB, "a snowy owl"))

        core_clock.advance(31 * 60)  # past its end: the timer closes it
        core.session_keeper.wake()
        (recap,) = await fake.wait_for(lambda: recaps(fake), timeout=10)
        closed = await core.sessions.get(s.id)
        assert closed is not None and closed.ended_by is None  # its time ran out
        final = await card_says(fake, core, closed)
        assert final["id"] == card["id"] and "🏁 Ended at" in final["content"]
        late = await delivered(core, await imagine(fake, CAROL, "too late"))
        assert late.state is JobState.SUCCEEDED  # just a job now
        assert await core.sessions.entry_for_job(late.id) is None
        summary = await core.sessions.recap(closed)
        await core.session_keeper.sessions_once()  # nothing more to post
    assert len(recaps(fake)) == 1 and len(cards(fake)) == 1
    assert [a["filename"] for a in recap["attachments"]] == ["entry-1.png", "entry-2.png"]
    assert summary.top[0].job.id == fox.id and summary.top[0].votes == 1


# -- a thread of its own -------------------------------------------------------------------


async def test_a_session_in_a_thread_of_its_own(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(), core_clock) as (core, adapter):
        rec = await session(fake, CAROL, "start", theme="owls at dusk", thread=True)
        said = await private(fake, rec)
        (card,) = cards(fake)
        thread_id = int(card["id"])  # the thread started from the card takes its id
        s = await until(lambda: core.sessions.current(here(thread_id, thread=True)))
        assert said == session_started_text(s.session, thread_id=str(thread_id))
        assert (s.session.chat_id, s.session.thread_id) == (str(thread_id), str(thread_id))
        assert fake.parent_of(thread_id) == CHAN
        assert fake.channel_name(thread_id) == thread_name("owls at dusk")
        assert card["thread"]["id"] == str(thread_id)
        shown = await card_says(fake, core, s.session)
        assert shown["id"] == card["id"]
        await fake.wait_for(lambda: fake.pins(CHAN) == [card["id"]])
        kept = await until(lambda: card_kept(core, s.session.id))
        assert kept == f"{CHAN}:{thread_id}"  # the card is not in the session's thread

        inside = await imagine(fake, ALICE, "an owl", channel=thread_id)
        outside = await imagine(fake, BOB, "a fox")  # in the channel: no entry
        owl, fox = await delivered(core, inside), await delivered(core, outside)
        assert (await entry(core, owl)).number == 1
        assert await core.sessions.entry_for_job(fox.id) is None
        message = original(fake, inside)
        assert message["channel_id"] == str(thread_id) and message["content"] == "🎨 #1"
        await private(fake, await vote(fake, message, BOB, channel=thread_id))
        await count_shows(fake, adapter, message["id"], 1)
        assert "Remix" in labels(message) and "Remix" not in labels(original(fake, outside))

        not_here = await session(fake, CAROL, "end")  # the channel has no session
        assert await private(fake, not_here) == NO_SESSION
        ended = await session(fake, CAROL, "end", channel=thread_id)
        await public(fake, ended)
        (recap,) = await fake.wait_for(lambda: recaps(fake, thread_id))
        assert [a["filename"] for a in recap["attachments"]] == ["entry-1.png"]
        assert recaps(fake) == []  # the recap is in the thread
        closed = await core.sessions.get(s.session.id)
        assert closed is not None
        core_clock.advance(11)  # the card's next update is due
        assert "🏁 Ended at" in (await card_says(fake, core, closed))["content"]


async def test_a_thread_is_refused_where_it_cannot_be_opened(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(), core_clock) as (core, _):
        nested = await session(fake, CAROL, "start", theme="owls", thread=True, channel=THREAD)
        assert await private(fake, nested) == THREAD_IN_THREAD_TEXT
        barred = await session(
            fake, CAROL, "start", theme="owls", thread=True, channel=CHAN2, guild=GUILD2
        )
        assert await private(fake, barred) == no_thread_permission_text(["Create Public Threads"])
        guest = await session(fake, BOB, "start", theme="owls", thread=True)
        assert await private(fake, guest) == not_starter_text()
        assert cards(fake) == []  # the card posted for it was taken back
        assert await core.sessions.list_sessions() == []

        # Discord refuses the thread after all (someone took the permission meanwhile):
        # the session is ended, and the starter told.
        fake.fail_next("POST", f"/channels/{CHAN}/messages/", status=403, match=_threads)
        failed = await session(fake, CAROL, "start", theme="owls", thread=True)
        assert await private(fake, failed) == THREAD_FAILED_TEXT
        (figures,) = await core.sessions.list_sessions()
        assert not figures.session.open
        assert cards(fake) == []


def _threads(rec: Any) -> bool:
    return str(rec.path).endswith("/threads")


async def test_a_card_the_bot_may_not_pin_is_posted_all_the_same(
    fake: FakeDiscord,
    build: Callable[..., Settings],
    core_clock: CoreClock,
    log_records: pytest.LogCaptureFixture,
) -> None:
    async with serving(build(), core_clock) as (core, _):
        rec = await session(fake, CAROL, "start", theme="attic finds", channel=CHAN2, guild=GUILD2)
        said = await private(fake, rec)
        assert said.startswith("🎨 Your session “attic finds” has started")
        (card,) = await fake.wait_for(lambda: cards(fake, CHAN2))
        refused = await fake.wait_for_request("PUT", f"/channels/{CHAN2}/messages/pins/")
        assert refused.status == 403 and fake.pins(CHAN2) == []
    assert any("card not pinned" in r.getMessage() for r in log_records.records)
    assert not [r for r in log_records.records if r.levelno >= logging.ERROR]
    assert card["content"].startswith("🎨 Session: “attic finds”")


async def test_a_recap_whose_files_do_not_fit_links_them(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    build: Callable[..., Settings],
    core_clock: CoreClock,
) -> None:
    async with serving(build(), core_clock) as (core, _):
        s, _ = await start(fake, core)
        fox = await delivered(core, await imagine(fake, ALICE, "a red fox"))
        owl = await delivered(core, await imagine(fake, BOB, "a snowy owl"))
        kept = core.media.local_result(owl.id)
        assert kept is not None
        kept.unlink()  # our copy of #2 is gone: its result's link goes instead
        # Discord refuses the upload as too large: the recap goes again with links only.
        fake.fail_next("POST", f"/channels/{CHAN}/messages", status=413, match=_uploads)
        await public(fake, await session(fake, CAROL, "end"))
        (recap,) = await fake.wait_for(lambda: recaps(fake))
        summary = await core.sessions.recap(s)
    (refused,) = [r for r in fake.find_requests("POST", f"/channels/{CHAN}/messages") if r.files]
    assert refused.status == 413
    assert [f[0] for f in refused.files] == ["entry-1.png"]
    assert [e["title"] for e in refused.json["embeds"]] == ["#2"]
    assert recap["attachments"] == []
    assert recap["content"] == recap_text(summary)
    assert [(e["title"], e["url"], e["description"]) for e in recap["embeds"]] == [
        (f"#{e.number}", e.job.result_urls[0], entry_credit(e)) for e in summary.top
    ]
    assert [e["image"]["url"] for e in recap["embeds"]] == [
        fox.result_urls[0],
        owl.result_urls[0],
    ]


def _uploads(rec: Any) -> bool:
    return bool(rec.files)
