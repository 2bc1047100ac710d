"""/readyz of `serve` (what `genrelay run` runs) with the real Discord adapter against the
fake Discord on loopback: ready once connected; while Discord does not answer, 503 naming
it, and the service keeps running. (Telegram: tests/test_startup.py.)"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar

import httpx
import pytest
from pydantic import SecretStr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

from bot.config import Settings
from bot.main.cli import serve
from bot.main.wiring import open_core
from bot.models import Origin
from sandbox import SandboxGateway
from tests.fakes.discord_api import FakeDiscord

LISTENING = re.compile(r"HTTP server listening on (http://\S+)")
T = TypeVar("T")


@pytest.fixture(autouse=True)
def restore_discord_py() -> Iterator[None]:
    """discord.py keeps its REST base and gateway URL in class attributes."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 20.0) -> T:
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.02)
        return value


@asynccontextmanager
async def serving(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[httpx.AsyncClient]:
    """`serve` in this process; a client on its HTTP server (port 0: read from its log)."""
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, until=stop))

    async def listening() -> str | None:
        assert not server.done(), server
        found = [m for r in caplog.records if (m := LISTENING.search(r.getMessage()))]
        return found[0].group(1) if found else None

    try:
        base = await until(listening)
        async with httpx.AsyncClient(base_url=base) as http:
            yield http
    finally:
        stop.set()
        await server


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token="discord-bot-token-SECRET-0123456789") as fd:
        yield fd


def discord_settings(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway, fake: FakeDiscord
) -> Settings:
    return make_settings(
        aa_base_url=sandbox.base_url,
        discord_bot_token=SecretStr(fake.token),
        discord_api_base_url=fake.api_base,
        discord_gateway_url=fake.gateway_url,
        adapter_retry_first_s=0.05,
        adapter_retry_max_s=0.2,
    )


async def test_readyz_is_200_once_the_discord_adapter_is_connected(
    make_settings: Callable[..., Settings],
    sandbox: SandboxGateway,
    fake: FakeDiscord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(discord_settings(make_settings, sandbox, fake), caplog) as http:

        async def ready() -> httpx.Response | None:
            resp = await http.get("/readyz")
            return None if resp.status_code == 503 else resp  # connecting

        resp = await until(ready)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert {k: body[k] for k in ("ready", "database", "adapters", "not_ready")} == {
            "ready": True,
            "database": True,
            "adapters": {"discord": True},
            "not_ready": {},
        }
        assert body["held_elsewhere"] == {}
        assert body["leases"]["discord"]["holder"] == body["replica"]  # this one holds it


async def test_readyz_names_discord_while_it_does_not_answer(
    make_settings: Callable[..., Settings],
    sandbox: SandboxGateway,
    fake: FakeDiscord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = discord_settings(make_settings, sandbox, fake).model_copy(
        update={"discord_api_base_url": "http://127.0.0.1:9/api/v10"}  # nobody listens
    )
    async with serving(settings, caplog) as http:

        def retries() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.getMessage().startswith("discord: not connected (attempt")
            ]

        async def tried_twice() -> bool:
            return len(retries()) >= 2

        await until(tried_twice)
        assert (await http.get("/healthz")).status_code == 200  # the rest runs
        resp = await http.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["adapters"] == {"discord": False}
        assert resp.json()["not_ready"]["discord"].startswith(
            "Discord could not be reached (ClientConnectorError"
        )
    assert all("trying again in" in line for line in retries())
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)
    assert "Unclosed" not in caplog.text
    assert all(fake.token not in r.getMessage() for r in caplog.records)


async def test_genrelay_run_serves_the_session_galleries(
    make_settings: Callable[..., Settings],
    sandbox: SandboxGateway,
    fake: FakeDiscord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = discord_settings(make_settings, sandbox, fake)
    async with open_core(settings) as core:
        origin = Origin(platform="discord", chat_id="5", user_id="1", user_name="Ann")
        spec = core.sessions.parse_start("paper boats")
        session = await core.sessions.start(origin, spec, is_admin=True)
    async with serving(settings, caplog) as http:
        page = await http.get(f"/sessions/{session.gallery_key}")
        assert page.status_code == 200 and "paper boats" in page.text
        assert (await http.get("/sessions/not-a-key")).status_code == 404
