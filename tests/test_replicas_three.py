"""Issue 15's own check, with real processes on PostgreSQL: three `genrelay run` replicas on
one fresh schema, each with both Telegram (the fake Bot API, long polling) and Discord (the
fake Discord: REST and gateway) and the sandbox gateway. Requests keep arriving on both
platforms (/imagine in a Telegram chat of its own, a Discord /imagine interaction in a
channel of its own) while the replica holding `telegram` is killed (-9), then the one
holding `discord`, then the `telegram` holder again; a fresh replica is started after
each kill, so three keep running. Each takeover (the lease names a live replica, and that
replica's adapter is connected) must come within 15 s; every request gets exactly one
result; no task is created twice; no job is left unfinished.

Discord, unlike Telegram, keeps nothing for a bot that is away: an interaction made while
no replica is connected is lost at Discord's end ("The application did not respond"), not
ours. So no Discord interaction is made from the moment the `discord` holder is killed
until another replica is connected; those made before are in flight at the kill and must
be answered like any other."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

from bot.models import JobState
from sandbox import SandboxGateway
from storage.postgres import PostgresJobStore
from tests.conftest import API_KEY
from tests.crashes import (
    CRASH_WAIT_S,
    SEND_METHODS,
    TOKEN,
    Asked,
    RunProcess,
    ask,
    seen,
    settle,
    unfinished,
)
from tests.fakes.discord_api import FakeDiscord, FakeInteraction
from tests.fakes.telegram_api import FakeTelegram
from tests.replica_procs import (
    EVERY_MESSAGE,
    exactly_one_result,
    lease_holder,
    pg_env,
    replica_name,
    start,
)

DISCORD_TOKEN = "discord-bot-token-SECRET-three-replicas"
APP_ID = 515151
GUILD = 3000
CHANNELS = range(30_000, 30_200)  # one per interaction
DISCORD_USER = 5100
SPEED = 1.5  # of the sandbox: a nanobanana job runs 3 s, so jobs are in flight at each kill
TELEGRAM_EVERY_S = 0.25  # between two Telegram requests
DISCORD_EVERY_S = 0.4  # between two Discord interactions (while one replica is connected)
BEFORE_KILL = 15  # new jobs recorded (some running) since the last takeover, before a kill
KILLS = ("telegram", "discord", "telegram")  # the lease whose holder is killed, in turn
KILLED_TAKEOVER_S = 15.0  # issue 15
AFTER_LAST_S = 2.0  # requests keep coming this long after the last takeover
SETTLE_S = 40.0  # after the last request, for every one to reach its end
CONNECTED = {"telegram": "telegram: connected as", "discord": "discord: connected as"}


@pytest.fixture(autouse=True)
def restore_discord_py() -> Iterator[None]:
    """discord.py keeps its REST base and gateway URL in class attributes."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def gateway() -> AsyncIterator[SandboxGateway]:
    async with SandboxGateway(api_key=API_KEY, speed=SPEED, late_url_polls=1) as gw:
        yield gw


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=DISCORD_TOKEN, app_id=APP_ID, bot_user_id=APP_ID) as fd:
        fd.add_user(DISCORD_USER, "ann")
        fd.add_guild(GUILD, "harbour", channels=list(CHANNELS))
        yield fd


@dataclass
class Traffic:
    """The requests made on both platforms; Discord's only while `discord_open` is set."""

    telegram: list[Asked] = field(default_factory=list)
    discord: list[tuple[FakeInteraction, str, int]] = field(default_factory=list)  # + epoch
    discord_open: asyncio.Event = field(default_factory=asyncio.Event)
    epoch: int = 0  # of the Discord connection: one more after each kill of its holder
    killed_epochs: set[int] = field(default_factory=set)
    calls_at_kills: list[int] = field(default_factory=list)  # len(fake Telegram's calls)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def ask_telegram(self, fake: FakeTelegram) -> None:
        for i in itertools.count():
            if self.done.is_set():
                return
            prompt = f"a lighthouse, telegram picture {i:03d}"
            self.telegram.append(ask(fake, 7300 + i, "/imagine", prompt))
            await asyncio.sleep(TELEGRAM_EVERY_S)

    async def ask_discord(self, fake: FakeDiscord) -> None:
        for i, channel in enumerate(CHANNELS):
            await self.discord_open.wait()
            if self.done.is_set():
                return
            prompt = f"a harbour, discord picture {i:03d}"
            options = {"prompt": prompt}
            rec = await fake.slash(
                "imagine", guild_id=GUILD, channel_id=channel, user_id=DISCORD_USER, options=options
            )
            self.discord.append((rec, prompt, self.epoch))
            await asyncio.sleep(DISCORD_EVERY_S)


class Replicas:
    """The running replicas, a fresh one started after each kill."""

    def __init__(self, tmp_path: Path, env: dict[str, str], store: PostgresJobStore) -> None:
        self.tmp_path, self.env, self.store = tmp_path, env, store
        self.running: list[RunProcess] = []
        self.killed: list[RunProcess] = []
        self._started = 0

    async def add(self) -> RunProcess:
        self._started += 1
        proc, _ = await start(self.tmp_path, self.env, f"replica-{self._started}")
        self.running.append(proc)
        return proc

    async def holder(self, lease: str) -> RunProcess:
        """The running replica holding `lease`, once one does."""
        names = {replica_name(p): p for p in self.running}
        async with asyncio.timeout(CRASH_WAIT_S):
            while (name := await lease_holder(self.store, lease)) not in names:
                await asyncio.sleep(0.05)
        assert name is not None
        return names[name]

    async def connected(self, lease: str, before: dict[int, int]) -> RunProcess:
        """The holder of `lease`, once its adapter logged one more connect than `before`."""
        while True:
            proc = await self.holder(lease)
            if connects(proc, lease) > before.get(proc.pid, 0):
                return proc
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for proc in self.running:
            await proc.stop()


def connects(proc: RunProcess, lease: str) -> int:
    return proc.log_path.read_text(errors="replace").count(CONNECTED[lease])


async def jobs_since(store: PostgresJobStore, seen_before: int) -> None:
    """Until BEFORE_KILL more jobs are recorded than `seen_before`, some with the gateway."""
    async with asyncio.timeout(CRASH_WAIT_S):
        while True:
            jobs = await store.recent(1000)
            running = [j for j in jobs if j.state in (JobState.QUEUED, JobState.RUNNING)]
            if len(jobs) >= seen_before + BEFORE_KILL and running:
                return
            await asyncio.sleep(0.05)


async def kill_holder(
    replicas: Replicas, traffic: Traffic, tg: FakeTelegram, lease: str
) -> tuple[dict[str, float], list[str]]:
    """Kill -9 the holder of `lease`, start a fresh replica, and wait until every lease the
    victim held is held by a connected replica again: seconds from the kill, per lease."""
    loop = asyncio.get_running_loop()
    victim = await replicas.holder(lease)
    held = [x for x in CONNECTED if await lease_holder(replicas.store, x) == replica_name(victim)]
    before = {p.pid: {x: connects(p, x) for x in CONNECTED} for p in replicas.running}
    if "discord" in held:
        traffic.discord_open.clear()  # nobody would receive them: lost at Discord's end
        traffic.killed_epochs.add(traffic.epoch)
        traffic.epoch += 1
    killed_at = loop.time()
    os.kill(victim.pid, signal.SIGKILL)
    await victim.proc.wait()  # reaped: its pid is gone, as after a real crash
    replicas.running.remove(victim)
    replicas.killed.append(victim)
    traffic.calls_at_kills.append(len(tg.calls))
    await replicas.add()
    times = {}
    for x in held:
        counts = {pid: c[x] for pid, c in before.items()}
        await replicas.connected(x, counts)
        times[x] = loop.time() - killed_at
    traffic.discord_open.set()
    return times, held


def discord_results(fake: FakeDiscord, traffic: Traffic) -> tuple[list[str], list[str]]:
    """Each interaction's channel shows exactly one result or final answer from the bot (its
    response edited into one, a followup or a channel post): the problems, and the
    interactions excused: those that came to a holder killed before it answered them
    (Discord has no one to give them to again; the user is told "The application did not
    respond"). One it answered ("thinking…") was recorded before it was answered
    (adapters/discord/generate.py), so it must have its result."""
    problems, excused = [], []
    for rec, prompt, epoch in traffic.discord:
        shown = [
            m
            for m in fake.channel_messages(rec.channel_id)
            if str((m.get("author") or {}).get("id")) == str(APP_ID)
            and (fake.message_files(m) or (m.get("content") and not unfinished(m["content"])))
        ]
        if not shown and epoch in traffic.killed_epochs and not rec.acknowledged:
            excused.append(f"{prompt} (unread)")
        elif len(shown) != 1:
            acked = "acknowledged" if rec.acknowledged else "never acknowledged"
            problems.append(f"discord {prompt!r} ({acked}): {len(shown)} results shown")
    return problems, excused


def discord_creates(gateway: SandboxGateway, traffic: Traffic) -> list[str]:
    problems = []
    for _, prompt, _ in traffic.discord:
        creates = [r for r in gateway.create_calls() if prompt.encode() in r.body]
        if len(creates) > 1:
            problems.append(f"discord {prompt!r}: {len(creates)} create calls")
    return problems


async def settle_discord(
    fake: FakeDiscord, gateway: SandboxGateway, traffic: Traffic
) -> tuple[list[str], list[str]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while (judged := discord_results(fake, traffic))[0] and loop.time() < deadline:
        await asyncio.sleep(0.1)
    problems, excused = judged
    return problems + discord_creates(gateway, traffic), excused


def telegram_results(
    tg: FakeTelegram, traffic: Traffic, killed: Sequence[RunProcess]
) -> tuple[list[str], list[str]]:
    """`exactly_one_result`, but for the known residual of a kill mid-delivery (Telegram has
    no idempotent send): a chat whose first result was sent before a kill by a replica that
    died before recording it gets it twice. Excused: a second result in a chat whose first
    was sent before some kill and that no killed replica logged as delivered."""
    logs = "".join(p.log_path.read_text(errors="replace") for p in killed)
    first_kill = min(traffic.calls_at_kills, default=0)
    last_kill = max(traffic.calls_at_kills, default=0)
    problems, excused = [], []
    for problem, a in zip(
        (exactly_one_result(tg, [a], crashes=len(KILLS)) for a in traffic.telegram),
        traffic.telegram,
        strict=True,
    ):
        if not problem:
            continue
        results = [
            i
            for i, c in enumerate(tg.calls)
            if c.ok
            and c.method in SEND_METHODS
            and str(c.chat_id) == str(a.chat_id)
            and not (c.method == "sendMessage" and unfinished(str(c.params.get("text", ""))))
        ]
        in_flight = len(results) == 2 and first_kill > 0 and results[0] < last_kill
        if in_flight and f"delivered to telegram chat {a.chat_id}\n" not in logs:
            excused.append(a.text)
        else:
            problems += problem
    return problems, excused


def discord_env(fake: FakeDiscord) -> dict[str, str]:
    return {
        "DISCORD_BOT_TOKEN": fake.token,
        "DISCORD_API_BASE_URL": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
    }


async def test_three_replicas_lose_and_repeat_nothing_as_holders_are_killed(
    tmp_path: Path,
    gateway: SandboxGateway,
    discord_fake: FakeDiscord,
    pg_url: str,
) -> None:
    async with FakeTelegram(token=TOKEN) as tg, PostgresJobStore(pg_url) as store:
        env = pg_env(tmp_path, gateway, tg, pg_url, **discord_env(discord_fake))
        replicas = Replicas(tmp_path, env, store)
        traffic = Traffic()
        takeovers: list[tuple[str, dict[str, float], list[str]]] = []
        try:
            for _ in range(3):
                await replicas.add()
            for lease in CONNECTED:
                await replicas.connected(lease, {})
            traffic.discord_open.set()
            asking = [
                asyncio.create_task(traffic.ask_telegram(tg)),
                asyncio.create_task(traffic.ask_discord(discord_fake)),
            ]
            try:
                recorded = 0
                for lease in KILLS:
                    await jobs_since(store, recorded)
                    recorded = len(await store.recent(1000))
                    times, held = await kill_holder(replicas, traffic, tg, lease)
                    takeovers.append((lease, times, held))
                await asyncio.sleep(AFTER_LAST_S)
            finally:
                traffic.done.set()
                traffic.discord_open.set()
                await asyncio.gather(*asking)
            assert len(replicas.running) == 3

            problems = await settle(
                tg,
                gateway,
                store,
                traffic.telegram,
                crashes=len(KILLS),
                residual=EVERY_MESSAGE,
                timeout=SETTLE_S,
            )
            more, twice = telegram_results(tg, traffic, replicas.killed)
            problems += more
            more, never_read = await settle_discord(discord_fake, gateway, traffic)
            problems += more
            jobs = await store.recent(1000)
            asked = len(traffic.telegram) + len(traffic.discord) - len(never_read)
            if len(jobs) != asked:
                problems.append(f"{len(jobs)} jobs for {asked} requests")
            assert not problems, "\n".join(problems) + "\n" + seen(tg, gateway, traffic.telegram)
        finally:
            await replicas.stop()
        slow = [(lease, t) for lease, t, _ in takeovers if max(t.values()) >= KILLED_TAKEOVER_S]
        assert not slow, f"takeovers of {KILLED_TAKEOVER_S:.0f} s or more: {slow}"
        summary: dict[str, Any] = {
            "telegram requests": len(traffic.telegram),
            "discord interactions": len(traffic.discord),
            "states": dict(Counter(j.state.value for j in jobs)),
            "gateway creates": len(gateway.create_calls()),
            "telegram results sent twice (delivery in flight at a kill)": twice,
            "discord interactions a killed holder never read": never_read,
        }
        for i, (lease, times, held) in enumerate(takeovers, 1):
            shown = ", ".join(f"{x} in {times[x]:.2f} s" for x in held)
            print(f"kill {i} (the {lease} holder, which held {held}): taken over: {shown}")
        print(f"three replicas: {summary}")
