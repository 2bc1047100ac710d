"""The fault test of issue 15, with real processes on PostgreSQL: two `genrelay run` replicas
on one fresh schema of the test server, the fake Bot API and the sandbox gateway. Fifty
requests arrive, one chat each; once about twenty are recorded and jobs run, the replica
holding Telegram is killed (-9). The other must take Telegram over within 15 s, and in the
end every request has exactly one result, no task was created twice and every job is
terminal and delivered (or undeliverable).

Once with long polling, once in webhook mode, where the fake POSTs each update through a
small load balancer that alternates between the two replicas' HTTP servers and fails over
to the other when one does not answer (a dead replica's port refuses)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.models import Delivery, JobState
from sandbox import SandboxGateway
from storage.postgres import PostgresJobStore
from tests.conftest import API_KEY
from tests.crashes import (
    CRASH_WAIT_S,
    TOKEN,
    Asked,
    RunProcess,
    ask,
    seen,
    settle,
    unfinished,
)
from tests.fakes.telegram_api import FakeTelegram
from tests.replica_procs import (
    EVERY_MESSAGE,
    exactly_one_result,
    lease_holder,
    pg_env,
    replica_name,
    start,
)

PUBLIC_URL = "https://public.example/telegram/hook-5c1e"
REQUESTS = 50
KILL_AFTER = 20  # requests recorded as jobs when the holder is killed (some running, some done)
ASK_EVERY_S = 0.15  # between two requests: they keep coming while Telegram changes hands
SPEED = 1.5  # of the sandbox: a nanobanana job runs 3 s, so many are in flight at the kill
KILLED_TAKEOVER_S = 15.0  # issue 15
SETTLE_S = 45.0  # after the last request, for every one to reach its end
ORPHAN_WAIT_S = 10.0  # after that, for the status lines of delivered jobs to be deleted


@pytest.fixture
async def gateway() -> AsyncIterator[SandboxGateway]:
    async with SandboxGateway(api_key=API_KEY, speed=SPEED, late_url_polls=1) as gw:
        yield gw


class Balancer:
    """A load balancer in front of the replicas' HTTP servers: each request goes to the
    next backend in turn, and to the following one when a backend does not answer (refused,
    or cut off); 502 when none did. `sent` counts the requests each backend answered."""

    def __init__(self, backends: Sequence[str]) -> None:
        self.backends = list(backends)
        self.sent: Counter[str] = Counter()
        self._turn = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> Balancer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        first, self._turn = self._turn, self._turn + 1
        for i in range(len(self.backends)):
            backend = self.backends[(first + i) % len(self.backends)]
            try:
                async with self._http.request(
                    request.method, backend + request.path_qs, data=body, headers=headers
                ) as resp:
                    text = await resp.read()
                    self.sent[backend] += 1
                    return web.Response(status=resp.status, body=text)
            except aiohttp.ClientConnectionError:
                continue  # refused or cut off: the next backend
        return web.Response(status=502, text="no backend answered")


async def telegram_holder(store: PostgresJobStore) -> str | None:
    """Who holds the `telegram` lease now, as the leases table says (None: nobody)."""
    return await lease_holder(store, "telegram")


async def holder_among(store: PostgresJobStore, procs: Sequence[RunProcess]) -> RunProcess:
    """The replica holding Telegram, once one does."""
    names = {replica_name(p): p for p in procs}
    async with asyncio.timeout(CRASH_WAIT_S):
        while (holder := await telegram_holder(store)) not in names:
            await asyncio.sleep(0.05)
    assert holder is not None
    return names[holder]


async def ask_all(fake: FakeTelegram, asked: list[Asked]) -> None:
    """REQUESTS requests, ASK_EVERY_S apart, each in a chat of its own (distinct prompts,
    none a part of another: the gateway's create calls are matched by prompt)."""
    for i in range(REQUESTS):
        asked.append(ask(fake, 7100 + i, "/imagine", f"a lighthouse, picture {i:02d} of fifty"))
        await asyncio.sleep(ASK_EVERY_S)


async def mid_run(store: PostgresJobStore) -> None:
    """Until KILL_AFTER requests are jobs, some of them with the gateway and a result
    delivered: the holder dies amid submits, polls, status lines and deliveries."""
    async with asyncio.timeout(CRASH_WAIT_S):
        while True:
            jobs = await store.recent(1000)
            running = [j for j in jobs if j.state in (JobState.QUEUED, JobState.RUNNING)]
            delivered = [j for j in jobs if j.delivery is Delivery.DELIVERED]
            if len(jobs) >= KILL_AFTER and running and delivered:
                return
            await asyncio.sleep(0.05)


async def takeover_s(store: PostgresJobStore, heir: RunProcess, killed_at: float) -> float:
    """Seconds from the kill until the lease row names `heir`."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(CRASH_WAIT_S):
        while await telegram_holder(store) != replica_name(heir):
            await asyncio.sleep(0.05)
    return loop.time() - killed_at


STATUS_KEPT = re.compile(r"status message \d+ in telegram chat (-?\d+)")


def excused_chats(fake: FakeTelegram, dead: RunProcess, calls_at_kill: int) -> set[str]:
    """The chats where the killed holder left a status line nobody can end (the known
    residual, see the test): a status line it posted without recording its id."""
    log = dead.log_path.read_text(errors="replace")
    kept = set(STATUS_KEPT.findall(log))
    posted = {
        str(c.chat_id)
        for c in fake.calls[:calls_at_kill]
        if c.method == "sendMessage" and c.ok and unfinished(str(c.params.get("text", "")))
    }
    return posted - kept


def orphans(fake: FakeTelegram, asked: Sequence[Asked], excused: set[str]) -> list[str]:
    """Status lines left showing an unfinished state, but in the `excused` chats."""
    problems = []
    for a in asked:
        if str(a.chat_id) in excused:
            continue
        for (cid, mid), m in sorted(fake.messages.items()):
            mine = cid == a.chat_id and (m.get("from") or {}).get("id") == fake.bot_id
            if mine and "text" in m and unfinished(str(m["text"])):
                problems.append(f"orphan status in chat {cid}: #{mid} {m['text']!r}")
    return problems


async def no_orphans(fake: FakeTelegram, asked: Sequence[Asked], excused: set[str]) -> list[str]:
    """`orphans`, once none is left or ORPHAN_WAIT_S passed (a status line is deleted in
    the background once the chat's budget has room)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ORPHAN_WAIT_S
    while (left := orphans(fake, asked, excused)) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return left


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path, env: dict[str, str]
) -> AsyncIterator[tuple[list[RunProcess], list[str]]]:
    procs: list[RunProcess] = []
    try:
        urls = []
        for name in ("one", "two"):
            proc, url = await start(tmp_path, env, name)
            procs.append(proc)
            urls.append(url)
        yield procs, urls
    finally:
        for proc in procs:
            await proc.stop()


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_the_telegram_holder_killed_mid_run_loses_and_repeats_nothing(
    tmp_path: Path, gateway: SandboxGateway, pg_url: str, mode: str
) -> None:
    loop = asyncio.get_running_loop()
    extra = {"TELEGRAM_WEBHOOK_URL": PUBLIC_URL} if mode == "webhook" else {}
    async with (
        FakeTelegram(token=TOKEN) as fake,
        PostgresJobStore(pg_url) as store,
        replicas(tmp_path, pg_env(tmp_path, gateway, fake, pg_url, **extra)) as (procs, urls),
        Balancer(urls) as balancer,
    ):
        fake.webhook_forward = balancer.url  # only used in webhook mode
        holder = await holder_among(store, procs)
        heir = next(p for p in procs if p is not holder)
        await holder.wait_ready(CRASH_WAIT_S)
        asked: list[Asked] = []
        asking = asyncio.create_task(ask_all(fake, asked))
        try:
            await mid_run(store)
            at_kill = Counter(f"{j.state.value}/{j.delivery.value}" for j in await store.recent(99))
            killed_at = loop.time()
            os.kill(holder.pid, signal.SIGKILL)
            await holder.proc.wait()
            calls_at_kill = len(fake.calls)  # reaped: its pid is gone, as after a real crash
            lease_s = await takeover_s(store, heir, killed_at)
            await heir.wait_ready(CRASH_WAIT_S)
            connected_s = loop.time() - killed_at
        finally:
            await asking
        assert lease_s < KILLED_TAKEOVER_S, f"the lease changed hands {lease_s:.1f} s after"
        assert connected_s < KILLED_TAKEOVER_S, f"connected {connected_s:.1f} s after the kill"

        # THE KNOWN RESIDUAL, where a status line stays showing "⏳": the killed holder
        # posted a status line and died before recording its id (tests/crashes.py and
        # test_crash_points.py's "status in flight": nobody can learn that id). Those chats
        # alone are excused from the orphan check; judge()'s own orphan check is off
        # (residual: every message id) and `no_orphans` does it per chat. (A status line
        # whose delete waited for the chat's budget when the holder died is owed in the
        # store, and the next holder deletes it: not excused.)
        excused = excused_chats(fake, holder, calls_at_kill)
        problems = await settle(
            fake, gateway, store, asked, crashes=1, residual=EVERY_MESSAGE, timeout=SETTLE_S
        )
        problems += exactly_one_result(fake, asked, crashes=1)
        problems += await no_orphans(fake, asked, excused)
        jobs = await store.recent(1000)
        if len(jobs) != REQUESTS:
            problems.append(f"{len(jobs)} jobs for {REQUESTS} requests")
        assert not problems, "\n".join(problems) + "\n" + seen(fake, gateway, asked)
        interrupted = sum(j.state is JobState.INTERRUPTED for j in jobs)
        assert REQUESTS - interrupted <= len(gateway.create_calls()) <= REQUESTS
        if mode == "webhook":
            assert len(balancer.sent) == 2, balancer.sent  # both replicas received updates
            assert fake.webhook_posts and all(p.ok for p in fake.webhook_posts[-1:])
        print(
            f"{mode}: killed at {at_kill}; lease taken over in {lease_s:.2f} s, connected in "
            f"{connected_s:.2f} s; states {Counter(j.state.value for j in jobs)}; "
            f"chats excused from the orphan check: {sorted(excused)}"
        )
