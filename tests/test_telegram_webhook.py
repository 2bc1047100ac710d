"""Telegram in webhook mode, end to end: the real python-telegram-bot client in
TelegramAdapter, FakeTelegram POSTing updates to our HTTP server as Telegram does (through a
"load balancer": the public URL's path on our port), the sandbox as the gateway, real
SQLite files."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from adapters.telegram import TelegramAdapter
from adapters.telegram.flood import FloodControl
from adapters.telegram.inbox import inbox_source
from adapters.telegram.intake import PollingIntake, WebhookIntake
from adapters.telegram.webhook import SECRET_HEADER, UPDATE_MAX_BYTES, TelegramWebhook
from bot.app import Core
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.main.cli import serve
from bot.main.wiring import job_store, open_core, telegram_webhook
from bot.models import Job
from bot.web import WebServer
from sandbox import SandboxGateway
from tests.conftest import API_KEY, running
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import jpeg_bytes

TOKEN = "7012345678:AAHfake-Token_for-genrelay-tests-0123"
SOURCE = inbox_source(TOKEN)
PUBLIC_URL = "https://public.example/telegram/hook-7f3a"
GROUP_ID = -1001234567890
LISTENING = re.compile(r"HTTP server listening on (http://\S+)")
T = TypeVar("T")

JSONDict = dict[str, Any]


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.02)
        return value


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


@pytest.fixture
def webhook_settings(
    fake: FakeTelegram, sandbox: SandboxGateway, make_settings: Callable[..., Settings]
) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "aa_base_url": sandbox.base_url,
            "telegram_bot_token": SecretStr(fake.token),
            "telegram_api_base_url": fake.api_base,
            "telegram_file_base_url": fake.file_base,
            "telegram_webhook_url": PUBLIC_URL,
        }
        values.update(overrides)
        return make_settings(**values)

    return build


@dataclass
class Replica:
    """One process's worth: a core, its HTTP server with the webhook route, and (on the
    one that handles Telegram) the adapter."""

    core: Core
    web: WebServer
    hook: TelegramWebhook
    adapter: TelegramAdapter | None

    async def jobs(self) -> list[Job]:
        return await self.core.store.recent(50, platform="telegram")

    async def pending(self) -> list[tuple[int, str]]:
        return await self.core.store.inbox_pending(SOURCE)


@asynccontextmanager
async def replica(
    settings: Settings, *, adapter: bool = True, drain_interval_s: float | None = None
) -> AsyncIterator[Replica]:
    async with open_core(settings) as core, running(core):
        hook = telegram_webhook(core, settings)
        assert hook is not None
        if drain_interval_s is not None:
            hook.drain_interval_s = drain_interval_s
        async with WebServer(host="127.0.0.1", port=0, media=core.media, routes=[hook]) as web:
            if not adapter:
                yield Replica(core, web, hook, None)
                return
            limiter = FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=1)
            kwargs: dict[str, Any] = {"album_debounce_s": 0.2, "rate_limiter": limiter}
            async with TelegramAdapter(core, settings, webhook=hook, **kwargs) as telegram:
                yield Replica(core, web, hook, telegram)


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=io.BytesIO(body), headers=headers or {}) as resp,
    ):
        return resp.status, await resp.text()


def update_json(fake: FakeTelegram, text: str, update_id: int = 900) -> JSONDict:
    """An update as Telegram would POST it, for a message the fake knows."""
    group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
    message = {
        "message_id": 77,
        "date": 1_800_000_000,
        "chat": group,
        "from": ann,
        "text": text,
        "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
    }
    fake.messages[(GROUP_ID, 77)] = message
    return {"update_id": update_id, "message": message}


# -- end to end through `genrelay run`'s serve() -------------------------------------------------


@asynccontextmanager
async def serving(settings: Settings, caplog: pytest.LogCaptureFixture) -> AsyncIterator[str]:
    """`serve` in this process; yields its HTTP server's base URL (port 0: from its log)."""
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, until=stop))

    async def listening() -> str | None:
        assert not server.done(), server
        found = [m for r in caplog.records if (m := LISTENING.search(r.getMessage()))]
        return found[0].group(1) if found else None

    try:
        yield await until(listening)
    finally:
        stop.set()
        await server


async def test_imagine_in_webhook_mode_makes_one_job_and_one_result(
    fake: FakeTelegram,
    sandbox: SandboxGateway,
    webhook_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = webhook_settings()
    async with serving(settings, caplog) as base:
        fake.webhook_forward = base  # the load balancer: the public URL's path, on our port
        set_call = await fake.wait_for("setWebhook", ok=True)
        group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
        ask = fake.send_text(group, ann, "/imagine a lighthouse at dawn")
        photo = await fake.wait_for("sendPhoto", timeout=10)
        assert photo.params["reply_parameters"]["message_id"] == ask["message_id"]
        async with job_store(settings) as store:  # another connection on the same file

            async def settled() -> list[Job] | None:
                jobs = await store.recent(10, platform="telegram")
                done = jobs and all(j.delivery.value == "delivered" for j in jobs)
                return jobs if done and not await store.inbox_pending(SOURCE) else None

            jobs = await until(settled)
    assert len(jobs) == 1 and jobs[0].prompt == "a lighthouse at dawn"
    assert len(sandbox.create_calls()) == 1
    assert len(fake.sent("sendPhoto")) == 1
    # Telegram was told where and how: our URL, the secret, the updates polling takes.
    assert set_call.params["url"] == PUBLIC_URL
    assert set_call.params["secret_token"] == settings.telegram_webhook_secret_token()
    assert set_call.params["allowed_updates"] == ["message", "callback_query"]
    assert "drop_pending_updates" not in set_call.params  # nothing Telegram holds is lost
    # The update came by webhook, not by getUpdates, and was accepted the first time.
    assert [c for c in fake.calls if c.method == "getUpdates"] == []
    assert [p.status for p in fake.webhook_posts] == [200]


@contextmanager
def service_logging(settings: Settings, out: io.StringIO) -> Iterator[None]:
    """The service's own logging (`genrelay run`'s filter of secrets) at DEBUG, into `out`."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    noisy = ("httpx", "httpcore", "aiohttp.access", "discord.gateway", "discord.http")
    levels = {name: logging.getLogger(name).level for name in (*noisy, "discord.webhook")}
    setup_logging("DEBUG", settings.secrets(), stream=out)
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def test_setwebhook_gets_the_secret_and_neither_it_nor_the_token_is_logged(
    fake: FakeTelegram,
    webhook_settings: Callable[..., Settings],
) -> None:
    settings = webhook_settings()
    secret = settings.telegram_webhook_secret_token()
    assert secret is not None and re.fullmatch(r"[0-9a-f]{64}", secret)
    out = io.StringIO()
    with service_logging(settings, out):
        async with replica(settings) as r:
            fake.webhook_forward = r.web.base_url
            await fake.wait_for("setWebhook", ok=True)
            group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
            ask = fake.send_text(group, ann, "/help")
            await fake.wait_for("sendMessage", lambda c: c.chat_id == GROUP_ID)
            bad = await post(r.web.base_url + "/telegram/hook-7f3a", b"{}", {SECRET_HEADER: "x"})
            assert bad[0] == 403
            assert ask["message_id"]
    text = out.getvalue()
    assert "setWebhook" in text  # PTB logged the call (at DEBUG) ...
    assert TOKEN not in text and TOKEN.partition(":")[2] not in text
    assert secret not in text  # ... without the secret it carries
    assert [p.secret for p in fake.webhook_posts] == [secret]


# -- the route -----------------------------------------------------------------------------------


async def test_the_route_refuses_what_telegram_did_not_send_and_keeps_nothing(
    fake: FakeTelegram, sandbox: SandboxGateway, webhook_settings: Callable[..., Settings]
) -> None:
    settings = webhook_settings()
    secret = settings.telegram_webhook_secret_token()
    assert secret is not None
    async with replica(settings) as r:
        url = r.web.base_url + "/telegram/hook-7f3a"
        good = {SECRET_HEADER: secret, "Content-Type": "application/json"}
        body = json.dumps(update_json(fake, "/imagine a fox in the snow")).encode()
        # Without the secret, or with another: 403, whatever the body.
        assert (await post(url, body))[0] == 403
        assert (await post(url, body, {SECRET_HEADER: ""}))[0] == 403
        assert (await post(url, body, {SECRET_HEADER: secret[:-1] + "x"}))[0] == 403
        assert (await post(url, body, {SECRET_HEADER: fake.token}))[0] == 403
        # The secret, but not an update: 400; too large: 413.
        assert (await post(url, b"not json", good))[0] == 400
        assert (await post(url, b"\xff\xfe{}", good))[0] == 400
        for wrong in (
            [1],
            {"message": {}},
            {"update_id": "5"},
            {"update_id": True},
            {"update_id": -1},
            {"update_id": 5, "message": "hello"},
        ):
            assert (await post(url, json.dumps(wrong).encode(), good))[0] == 400, wrong
        huge = b'{"update_id": 1, "pad": "' + b"x" * UPDATE_MAX_BYTES + b'"}'
        assert (await post(url, huge, good))[0] == 413
        # Only our path, only POST.
        assert (await post(r.web.base_url + "/telegram/other", body, good))[0] == 404
        async with aiohttp.ClientSession() as http, http.get(url, headers=good) as resp:
            assert resp.status == 405
        # Nothing was kept (the route writes before it answers), asked or answered.
        with sqlite3.connect(settings.database_path) as db:
            assert db.execute("SELECT count(*) FROM inbox").fetchone() == (0,)
        assert await r.jobs() == []
    assert sandbox.create_calls() == []
    assert [c.method for c in fake.calls if c.method.startswith(("send", "setMessage"))] == []


async def test_an_update_delivered_twice_makes_one_job(
    fake: FakeTelegram,
    sandbox: SandboxGateway,
    webhook_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fake.webhook_copies = 2  # Telegram may send an update again
    async with replica(webhook_settings()) as r:
        fake.webhook_forward = r.web.base_url
        group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
        fake.send_text(group, ann, "/imagine a paper boat in the rain")
        await fake.wait_for("sendPhoto", timeout=10)
        jobs = await until(lambda: settled(r))
        assert [p.status for p in fake.webhook_posts] == [200, 200]
    assert len(jobs) == 1
    assert len(sandbox.create_calls()) == 1
    assert len(fake.sent("sendPhoto")) == 1
    update_id = fake.webhook_posts[0].update_id
    assert any(
        f"update {update_id} came again; kept once" in rec.getMessage() for rec in caplog.records
    )


async def settled(r: Replica) -> list[Job] | None:
    """Every job delivered and every kept update handled; None until then."""
    jobs = await r.jobs()
    if not jobs or any(j.delivery.value != "delivered" for j in jobs) or await r.pending():
        return None
    return jobs


async def test_an_album_and_a_button_press_by_webhook_are_each_handled_once(
    fake: FakeTelegram, sandbox: SandboxGateway, webhook_settings: Callable[..., Settings]
) -> None:
    """An album's photos stay not done until the whole album was handled: the looks at the
    inbox meanwhile must not hand them over again. A button press comes the same way."""
    async with replica(webhook_settings(), drain_interval_s=0.05) as r:
        fake.webhook_forward = r.web.base_url
        group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
        first = fake.send_photo(
            group, ann, jpeg_bytes(1), caption="/imagine blend these", media_group_id="a-1"
        )
        fake.send_photo(group, ann, jpeg_bytes(2), media_group_id="a-1")
        photo = await fake.wait_for("sendPhoto", timeout=10)
        [parent] = await until(lambda: settled(r))
        assert parent.origin.message_id == str(first["message_id"]) and len(parent.images) == 2
        result = fake.messages[(GROUP_ID, photo.result["message_id"])]
        fake.press_button(group, ann, result, f"rr:{parent.id}")
        await fake.wait_for("sendPhoto", n=2, timeout=10)
        jobs = await until(async_value_of(r, 2))
    assert [j.parent_job_id for j in jobs if j.id != parent.id] == [parent.id]
    assert len(sandbox.create_calls()) == 2
    assert len(fake.sent("sendPhoto")) == 2
    assert len(fake.sent("answerCallbackQuery")) == 1


def async_value_of(r: Replica, n: int) -> Callable[[], Awaitable[list[Job] | None]]:
    """Until `n` jobs are settled."""

    async def check() -> list[Job] | None:
        jobs = await settled(r)
        return jobs if jobs is not None and len(jobs) == n else None

    return check


class FailingInbox:
    """The store, except that keeping an update fails the first `times` times (a disk full,
    a lock held too long)."""

    def __init__(self, store: Any, times: int) -> None:
        self.store = store
        self.times = times

    async def inbox_add(self, source: str, items: Any, now: float) -> list[int]:
        if self.times > 0:
            self.times -= 1
            raise OSError("disk full")
        return list(await self.store.inbox_add(source, items, now))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_an_update_the_store_could_not_keep_is_answered_500_and_comes_again(
    fake: FakeTelegram, sandbox: SandboxGateway, webhook_settings: Callable[..., Settings]
) -> None:
    async with replica(webhook_settings()) as r:
        r.hook.store = FailingInbox(r.core.store, times=2)
        fake.webhook_forward = r.web.base_url
        group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
        fake.send_text(group, ann, "/imagine a kite over the dunes")
        await fake.wait_for("sendPhoto", timeout=10)
        jobs = await until(lambda: settled(r))
    assert [p.status for p in fake.webhook_posts] == [500, 500, 200]
    assert len(jobs) == 1 and len(sandbox.create_calls()) == 1
    assert len(fake.sent("sendPhoto")) == 1


# -- replicas ------------------------------------------------------------------------------------


async def test_an_update_another_replica_kept_is_handled_here_once(
    fake: FakeTelegram, sandbox: SandboxGateway, webhook_settings: Callable[..., Settings]
) -> None:
    """Two processes' worth on one SQLite file: B only receives (no adapter: another replica
    holds Telegram), A handles. The load balancer sends every update to B."""
    settings = webhook_settings()
    group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
    async with replica(settings, adapter=False) as b:
        fake.webhook_url, fake.webhook_secret = PUBLIC_URL, settings.telegram_webhook_secret_token()
        fake.webhook_forward = b.web.base_url
        # Kept by B while no adapter runs anywhere: it waits in the inbox.
        early = fake.send_text(group, ann, "/imagine a lighthouse at dawn")
        await until(async_value(lambda: [p for p in fake.webhook_posts if p.ok]))
        assert [u for u, _ in await b.pending()] == [fake.webhook_posts[0].update_id]
        async with replica(settings, drain_interval_s=3600) as a:
            # A starts: what B kept is handled at once, once.
            await fake.wait_for("sendPhoto", timeout=10)
            await until(lambda: settled(a))
            # Kept by B now, while A runs: A was not woken (the route was B's), and its next
            # look at the inbox takes it, once; the one after finds nothing new.
            later = fake.send_text(group, ann, "/imagine a harbour at night")
            await until(async_value(lambda: [p for p in fake.webhook_posts[1:] if p.ok]))
            assert len(await a.pending()) == 1 and len(await a.jobs()) == 1
            assert a.adapter is not None and isinstance(a.adapter.intake, WebhookIntake)
            assert await a.adapter.intake.drain_once(a.adapter.app) == 1
            assert await a.adapter.intake.drain_once(a.adapter.app) == 0
            await fake.wait_for("sendPhoto", n=2, timeout=10)
            jobs = await until(lambda: settled(a))
    assert sorted(j.origin.message_id for j in jobs) == sorted(
        [str(early["message_id"]), str(later["message_id"])]
    )
    assert len(sandbox.create_calls()) == 2
    assert len(fake.sent("sendPhoto")) == 2


async def test_the_adapter_finds_what_another_replica_kept_without_being_woken(
    fake: FakeTelegram, webhook_settings: Callable[..., Settings]
) -> None:
    """The same at the default pace: only A's own looks at the inbox bring it in."""
    settings = webhook_settings()
    async with replica(settings) as a, replica(settings, adapter=False) as b:
        fake.webhook_forward = b.web.base_url
        group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
        ask = fake.send_text(group, ann, "/help")
        reply = await fake.wait_for("sendMessage", lambda c: c.chat_id == GROUP_ID)
        await until(lambda: nothing_pending(a))
    assert reply.params["reply_parameters"]["message_id"] == ask["message_id"]
    assert len(fake.sent("sendMessage")) == 1


async def nothing_pending(r: Replica) -> bool:
    return not await r.pending()


def async_value(get: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def check() -> T:
        return get()

    return check


async def test_a_genrelay_run_killed_after_keeping_an_update_loses_nothing(
    fake: FakeTelegram,
    sandbox: SandboxGateway,
    webhook_settings: Callable[..., Settings],
    unused_tcp_port: int,
) -> None:
    """A real `genrelay run` in webhook mode, SIGKILLed as its handler starts on an update
    its route kept (and answered 200 for: Telegram will not send it again); the next
    process finds it in the inbox and makes its one job."""
    settings = webhook_settings()
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_BASE_URL": fake.api_base,
        "TELEGRAM_FILE_BASE_URL": fake.file_base,
        "TELEGRAM_WEBHOOK_URL": PUBLIC_URL,
        "AA_BASE_URL": sandbox.base_url,
        "AA_API_KEY": API_KEY,
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(settings.data_dir),
        "HTTP_PORT": str(unused_tcp_port),
        "GENRELAY_CRASH_AT": "update_received",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await fake.wait_for("setWebhook", ok=True, timeout=20)
        fake.webhook_forward = f"http://127.0.0.1:{unused_tcp_port}"
        group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
        ask = fake.send_text(group, ann, "/imagine a lighthouse in a storm")
        assert await asyncio.wait_for(process.wait(), 20) == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert [p.status for p in fake.webhook_posts] == [200]  # kept: never sent again
    async with replica(settings) as r:
        await fake.wait_for("sendPhoto", timeout=10)
        [job] = await until(lambda: settled(r))
    assert job.origin.message_id == str(ask["message_id"])
    assert len(sandbox.create_calls()) == 1
    assert len(fake.sent("sendPhoto")) == 1
    assert len(fake.webhook_posts) == 1


# -- starting and stopping -----------------------------------------------------------------------


async def test_webhook_mode_without_the_http_server_is_refused_at_start(
    webhook_settings: Callable[..., Settings],
) -> None:
    settings = webhook_settings(http_port=None)
    with pytest.raises(ConfigError, match="HTTP server is off"):
        await serve(settings, until=asyncio.Event())
    with pytest.raises(ConfigError, match="HTTP server is off"):
        TelegramAdapter(open_core(settings), settings)  # no route given


async def test_a_url_telegram_refuses_stops_the_start_with_its_reason(
    fake: FakeTelegram, webhook_settings: Callable[..., Settings]
) -> None:
    settings = webhook_settings(telegram_webhook_url="http://public.example/telegram/hook")
    with pytest.raises(ConfigError) as refused:
        async with replica(settings):
            pass
    assert "https url must be provided" in str(refused.value).lower()
    assert TOKEN not in str(refused.value)
    assert fake.webhook_url == ""


async def test_back_to_polling_the_adapter_removes_the_webhook(
    fake: FakeTelegram, sandbox: SandboxGateway, webhook_settings: Callable[..., Settings]
) -> None:
    fake.webhook_url, fake.webhook_secret = PUBLIC_URL, "left-by-webhook-mode"
    settings = webhook_settings(telegram_webhook_url=None)
    async with (
        open_core(settings) as core,
        running(core),
        TelegramAdapter(core, settings, poll_timeout_s=1.0) as adapter,
    ):
        assert adapter.connected and isinstance(adapter.intake, PollingIntake)
        group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
        fake.send_text(group, ann, "/help")
        await fake.wait_for("sendMessage", lambda c: c.chat_id == GROUP_ID)
    assert fake.sent("deleteWebhook") and fake.webhook_url == ""
    assert fake.sent("setWebhook") == [] and fake.webhook_posts == []
    assert fake.sent("getUpdates")


async def test_a_stopping_replica_keeps_what_arrives_for_the_next_one(
    fake: FakeTelegram, webhook_settings: Callable[..., Settings]
) -> None:
    settings = webhook_settings()
    group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann", "ann")
    async with replica(settings) as r:
        fake.webhook_forward = r.web.base_url
        assert r.adapter is not None and r.adapter.connected
        await r.adapter.stop_intake()  # SIGTERM: take nothing new
        assert not r.adapter.connected  # /readyz: not ready
        ask = fake.send_text(group, ann, "/help")
        await until(async_value(lambda: [p for p in fake.webhook_posts if p.ok]))
        assert len(await r.pending()) == 1  # kept, answered 200, not handled
    assert fake.sent("sendMessage") == []
    assert fake.sent("deleteWebhook") == []  # the webhook stays for the other replicas
    async with replica(settings) as nxt:  # the next holder of Telegram handles it
        reply = await fake.wait_for("sendMessage", lambda c: c.chat_id == GROUP_ID)
        await until(lambda: nothing_pending(nxt))
    assert reply.params["reply_parameters"]["message_id"] == ask["message_id"]


# -- settings ------------------------------------------------------------------------------------


def test_the_secret_is_derived_from_token_and_url_unless_given(
    make_settings: Callable[..., Settings],
) -> None:
    def secret(**kw: Any) -> str | None:
        values: dict[str, Any] = {"telegram_bot_token": SecretStr(TOKEN)}
        values.update(kw)
        return make_settings(**values).telegram_webhook_secret_token()

    derived = secret(telegram_webhook_url=PUBLIC_URL)
    assert derived is not None and re.fullmatch(r"[0-9a-f]{64}", derived)
    assert derived == secret(telegram_webhook_url=PUBLIC_URL)  # every replica alike
    assert derived != secret(telegram_webhook_url=PUBLIC_URL + "x")
    assert derived != secret(telegram_webhook_url=PUBLIC_URL, telegram_bot_token=SecretStr("1:b"))
    assert TOKEN.partition(":")[2] not in derived
    given = secret(telegram_webhook_url=PUBLIC_URL, telegram_webhook_secret=SecretStr("Ab_9-z"))
    assert given == "Ab_9-z"
    assert secret() is None  # polling
    settings = make_settings(telegram_bot_token=SecretStr(TOKEN), telegram_webhook_url=PUBLIC_URL)
    assert derived in settings.secrets() and TOKEN in settings.secrets()
    assert settings.telegram_webhook_path == "/telegram/hook-7f3a"


def test_webhook_settings_that_cannot_work_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("TELEGRAM_WEBHOOK_URL", "public.example/hook"),
        ("TELEGRAM_WEBHOOK_URL", "ftp://public.example/hook"),
        ("TELEGRAM_WEBHOOK_URL", "https://public.example/{token}"),
        ("TELEGRAM_WEBHOOK_URL", "https://public.example/a/../b"),
        ("TELEGRAM_WEBHOOK_SECRET", "has space"),
        ("TELEGRAM_WEBHOOK_SECRET", "x" * 257),
    ):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError, match=name.lower()):
            Settings(_env_file=None)  # type: ignore[call-arg]
        monkeypatch.delenv(name)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_URL", "")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "")
    for off in ("", "off"):
        monkeypatch.setenv("HTTP_PORT", off)
        s = Settings(_env_file=None)  # type: ignore[call-arg]
        assert (s.http_port, s.telegram_webhook_url, s.telegram_webhook_secret) == (None,) * 3
