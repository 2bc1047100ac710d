"""Command acknowledgement latency: 100 commands at once through the fake platform servers
(tests/fakes: the Telegram Bot API and Discord's REST + gateway, on loopback), the real
adapters (python-telegram-bot, discord.py) and a real core on the sandbox gateway.

    python -m bench.ack [--commands 100]

Telegram: 100 `/imagine` messages from 100 groups land in one getUpdates answer. Two
latencies per command: the acknowledgement, the bot's first call about it (its reaction,
TELEGRAM_ACK_REACTION), and the status message replying to it. Measured with the
adapter's default rate limiter (FloodControl: 30 requests a second for the whole bot and
20 a minute per group, as Telegram asks; reactions are not limited), with the limits
lifted (the adapter's own latency), and with python-telegram-bot's AIORateLimiter at its
defaults (what the adapter used before FloodControl: every request, reactions too, first
come first served). Discord: 100 `/imagine` interactions dispatched at once from 100 channels; the
acknowledgement is the interaction callback. Latencies in milliseconds from the moment
the fake server delivered the command to the moment the bot's request reached it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from bench.common import API_KEY, bench_settings, free_port, running_core
from bench.report import percentile, table
from bot.config import Settings
from bot.main.wiring import open_core
from sandbox import SandboxGateway

if TYPE_CHECKING:
    from telegram.ext import BaseRateLimiter

__all__ = ["main"]

TG_TOKEN = "7012345678:AAHbench-Token_for-genrelay-0123456789"
DC_TOKEN = "discord-bench-token-0123456789"
APP_ID = 424242
FLOOD, LIFTED, AIO = "FloodControl (default)", "limits lifted", "PTB's AIORateLimiter"

Latencies = dict[str, list[float]]  # what was measured -> ms per command


def _limiter(name: str) -> BaseRateLimiter[int] | None:
    from telegram.ext import AIORateLimiter

    from adapters.telegram.flood import FloodControl

    if name == LIFTED:
        return FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=1)
    if name == AIO:
        return AIORateLimiter(max_retries=3)  # as the adapter had it before FloodControl
    return None  # the adapter's default


def _tg_settings(tmp: Path, gateway_url: str, api_root: str) -> Settings:
    return bench_settings(
        tmp,
        gateway_url,
        telegram_bot_token=SecretStr(TG_TOKEN),
        telegram_api_base_url=f"{api_root}/bot",
        telegram_file_base_url=f"{api_root}/file/bot",
        poll_policy="fixed",
        poll_first_delay_s=0.2,
        poll_interval_s=0.5,
    )


@contextlib.asynccontextmanager
async def _telegram_bot(settings: Settings, limiter: str) -> AsyncIterator[None]:
    """A core and the Telegram adapter, running, its long poll waiting."""
    from adapters.telegram import TelegramAdapter

    async with (
        open_core(settings) as core,
        running_core(core),
        TelegramAdapter(core, settings, poll_timeout_s=1.0, rate_limiter=_limiter(limiter)),
    ):
        await asyncio.sleep(0.5)
        yield


async def telegram(n: int, tmp: Path, *, limiter: str) -> Latencies:
    """The fake Bot API and the sandbox on this process's event loop, beside the bot."""
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    from bench.tg_server import latencies, push_commands
    from tests.fakes.telegram_api import FakeTelegram

    async with (
        SandboxGateway(api_key=API_KEY, speed=0.05) as gw,
        FakeTelegram(token=TG_TOKEN) as fake,
        _telegram_bot(_tg_settings(tmp, gw.base_url, f"http://127.0.0.1:{fake.port}"), limiter),
    ):
        return await latencies(fake, push_commands(fake, n))


@contextlib.asynccontextmanager
async def _process(*argv: str) -> AsyncIterator[list[str]]:
    """A `python -m ...` child that prints `READY <fields...>` once listening; its fields."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(30):
            line = (await child.stdout.readline()).decode().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"{argv[0]} did not start")
        yield line[1:]
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


async def telegram_apart(n: int, tmp: Path, *, limiter: str) -> Latencies:
    """As `telegram`, with the fake Bot API and the sandbox gateway in processes of their
    own, as the real ones are: this process does only the bot's work."""
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    import httpx

    port = free_port()
    gateway = ("bench.gateway", "--port", str(port), "--api-key", API_KEY, "--speed", "0.05")
    async with (
        _process("bench.tg_server", "--token", TG_TOKEN) as (api_port, control_port),
        _process(*gateway, "--ready"),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{control_port}", timeout=90) as control,
        _telegram_bot(
            _tg_settings(tmp, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"),
            limiter,
        ),
    ):
        (await control.post("/push", params={"n": n})).raise_for_status()
        answer = await control.get("/latencies")
        answer.raise_for_status()
        return {str(k): [float(x) for x in v] for k, v in answer.json().items()}


async def discord(n: int, tmp: Path) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

    from adapters.discord import DiscordAdapter
    from tests.fakes.discord_api import FakeDiscord

    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    guild = 1000
    channels = [2000 + i for i in range(n)]
    try:
        async with (
            SandboxGateway(api_key=API_KEY, speed=0.05) as gw,
            FakeDiscord(token=DC_TOKEN, app_id=APP_ID, bot_user_id=APP_ID) as fake,
        ):
            for i in range(n):
                fake.add_user(5000 + i, f"user{i}")
            fake.add_guild(guild, "studio", channels=channels)
            settings = bench_settings(
                tmp,
                gw.base_url,
                discord_bot_token=SecretStr(fake.token),
                discord_api_base_url=fake.api_base,
                discord_gateway_url=fake.gateway_url,
                poll_policy="fixed",
                poll_first_delay_s=0.2,
                poll_interval_s=0.5,
            )
            async with (
                open_core(settings) as core,
                DiscordAdapter(core, settings, guild_ready_timeout=0.05),
                running_core(core),
            ):
                interactions = await asyncio.gather(
                    *(
                        fake.slash(
                            "imagine",
                            guild_id=guild,
                            channel_id=channels[i],
                            user_id=5000 + i,
                            options={"prompt": f"a lighthouse number {i}"},
                            guild_command=True,
                        )
                        for i in range(n)
                    )
                )
                for _ in range(6000):  # up to a minute
                    if all(i.acknowledged for i in interactions):
                        break
                    await asyncio.sleep(0.01)
                out = []
                for inter in interactions:
                    callback = next(
                        r
                        for r in fake.requests
                        if r.method == "POST" and f"/interactions/{inter.id}/" in r.path
                    )
                    out.append((callback.time - inter.created_at) * 1000)
                return out
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


def _row(platform: str, what: str, limiter: str, ms: Sequence[float]) -> list[str]:
    return [
        platform,
        what,
        limiter,
        str(len(ms)),
        f"{percentile(ms, 50):.0f}",
        f"{percentile(ms, 95):.0f}",
        f"{percentile(ms, 99):.0f}",
        f"{max(ms, default=0.0):.0f}",
    ]


async def _main(args: argparse.Namespace) -> None:
    rows = []
    measure = telegram if args.in_process else telegram_apart
    runs: list[tuple[str, str, Callable[[Path], Awaitable[Latencies]]]] = [
        ("telegram", name, functools.partial(measure, args.commands, limiter=name))
        for name in (FLOOD, LIFTED, AIO)
    ]
    runs.append(("discord", "", functools.partial(_discord, args.commands)))
    for platform, limiter, run in runs:
        with tempfile.TemporaryDirectory(prefix="genrelay-ack-") as tmp:
            try:
                for what, ms in (await run(Path(tmp))).items():
                    rows.append(_row(platform, what, limiter, ms))
            except Exception as exc:  # a benchmark reports, it does not fail the build
                failed = f"failed: {type(exc).__name__}: {exc}"[:80]
                rows.append([platform, failed, limiter, "", "", "", "", ""])
        print(f"  {platform} {limiter}: done", flush=True)
    print(f"\n{args.commands} commands at once; latency in ms")
    print(table(["platform", "what", "limiter", "commands", "p50", "p95", "p99", "max"], rows))


async def _discord(n: int, tmp: Path) -> Latencies:
    return {"interaction callback": await discord(n, tmp)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--commands", type=int, default=100, help="default 100")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="Telegram: run the fake Bot API and the gateway in this process (they then "
        "share its event loop with the bot)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
