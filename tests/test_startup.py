"""`genrelay run` at start, through the real entry point: a chat platform that does not
answer is tried again while the rest runs (/readyz 503, naming it), a configuration error
is one line on stderr and exit code 2."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bot.config import Settings
from sandbox import SandboxGateway
from tests.fakes.telegram_api import FakeTelegram
from tests.test_restart import _cli, _env

LISTENING = re.compile(r"HTTP server listening on (http://\S+)")


def _telegram_env(settings: Settings, tmp_path: Path, fake: FakeTelegram) -> dict[str, str]:
    env = _env(settings, tmp_path)
    env.update(
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE_URL=fake.api_base,
        TELEGRAM_FILE_BASE_URL=fake.file_base,
        ADAPTER_RETRY_FIRST_S="0.05",
        ADAPTER_RETRY_MAX_S="0.2",
    )
    return env


class Run:
    """A `genrelay run` subprocess whose stderr lines a test waits for."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def wait_for(self, pattern: str, count: int = 1) -> re.Match[str]:
        """The `count`-th stderr line matching `pattern`, reading on as needed."""
        regex = re.compile(pattern)
        async with asyncio.timeout(30):
            while True:
                found = [m for line in self.lines if (m := regex.search(line))]
                if len(found) >= count:
                    return found[count - 1]
                assert self.proc.stderr is not None
                raw = await self.proc.stderr.readline()
                assert raw, "genrelay run ended:\n" + "\n".join(self.lines)
                self.lines.append(raw.decode().rstrip("\n"))


@asynccontextmanager
async def genrelay_run(env: dict[str, str]) -> AsyncIterator[Run]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run = Run(proc)
    try:
        yield run
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        rest = await asyncio.wait_for(proc.stderr.read(), 30)
        run.lines += rest.decode().splitlines()
        await proc.wait()


async def test_run_waits_for_telegram_and_connects_once_it_answers(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    async with FakeTelegram() as fake:
        fake.fail_next("getMe", status=502, count=1_000_000)  # Telegram down: Bad Gateway
        async with genrelay_run(_telegram_env(settings, tmp_path, fake)) as run:
            base = (await run.wait_for(LISTENING.pattern)).group(1)
            await run.wait_for(r"telegram: not connected \(attempt 2\)")
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/healthz")).status_code == 200  # the rest runs
                resp = await http.get("/readyz")
                assert resp.status_code == 503
                body = resp.json()
                assert body["adapters"] == {"telegram": False}
                assert body["not_ready"]["telegram"].startswith(
                    "Telegram did not answer getMe (Bad Gateway)"
                )
                fake.clear_failures()  # Telegram is back
                await run.wait_for(r"telegram: connected as @genrelay_bot")
                resp = await http.get("/readyz")
                assert resp.status_code == 200, resp.text
                assert resp.json()["adapters"] == {"telegram": True}
        assert run.proc.returncode == 0
    log = "\n".join(run.lines)
    retries = [line for line in run.lines if "telegram: not connected (attempt" in line]
    assert len(retries) >= 2
    assert all("trying again in" in line for line in retries)
    assert "Traceback" not in log and "Unclosed" not in log
    assert fake.token not in log


async def test_a_reaction_telegram_does_not_take_is_one_line_and_exit_2(
    settings: Settings, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    env.update(TELEGRAM_BOT_TOKEN="123456:TEST-TOKEN", TELEGRAM_ACK_REACTION="bogus")
    code, out, err = await _cli(env, "run")
    assert code == 2
    (line,) = err.splitlines()  # nothing started, nothing else said
    assert line.startswith(
        "genrelay: TELEGRAM_ACK_REACTION is 'bogus', which Telegram does not take as a bot's "
        "reaction; set one of 👍"
    )


async def test_a_token_telegram_refuses_is_one_line_and_exit_2(
    settings: Settings, tmp_path: Path
) -> None:
    async with FakeTelegram() as fake:
        env = _telegram_env(settings, tmp_path, fake)
        env.update(TELEGRAM_BOT_TOKEN="654321:NOT-THE-TOKEN", LOG_LEVEL="WARNING")
        code, out, err = await _cli(env, "run")
    assert code == 2
    assert err.splitlines() == ["genrelay: Telegram refused TELEGRAM_BOT_TOKEN (unauthorized)"]
    assert [c.error for c in fake.calls] == ["Unauthorized"]  # getMe, asked once


async def test_bad_settings_are_one_line_and_exit_2(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings, tmp_path)
    env.update(HTTP_PORT="eighty", USER_CONCURRENT_JOBS="0", TELEGRAM_BOT_TOKEN="1:secret-x")
    code, out, err = await _cli(env, "run")
    assert code == 2
    assert err.splitlines() == [
        "genrelay: the configuration is invalid: HTTP_PORT: Input should be a valid integer, "
        "unable to parse string as an integer; USER_CONCURRENT_JOBS: Input should be greater "
        "than or equal to 1"
    ]
