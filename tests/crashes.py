"""Helpers of the crash-point suite, for any test that kills a real `genrelay run`: start and
stop one as a subprocess on the loopback fakes, and judge what a user would see after a crash.

    env = run_env(tmp_path, sandbox, fake, crash_at="job_recorded")
    first = await RunProcess.start(env, tmp_path / "run-1.log")
    asked = ask(fake, CHAT_ID, "/imagine", "a lighthouse at dawn")
    await first.wait_killed(CRASH_WAIT_S, "job_recorded")  # SIGKILL there, or AssertionError
    async with SqliteJobStore(tmp_path / "genrelay.db") as store:
        second = await RunProcess.start(run_env(tmp_path, sandbox, fake), tmp_path / "run-2.log")
        await second.wait_ready(CRASH_WAIT_S)  # up and delivering: judged from then on
        await settle(fake, sandbox, store, [asked], crashes=1)
        assert await second.stop() == 0  # SIGTERM: a graceful stop
        problems = await judge(fake, sandbox, store, [asked], crashes=1)

The invariants (`judge`), each from what the fakes recorded and the job store holds:

* no request lost: each request the user sent has, in its chat, a bot message replying to it
  that is a result or a final answer (not a status line), still there;
* no task created twice: the gateway saw at most one create call carrying its prompt;
* at most one duplicate message per crash: messages of one kind (status line, text, photo,
  document, video, album) sent more than once in the request's chat, counted over all kinds;
* no job left unfinished: every job is terminal and delivered or undeliverable;
* no orphan status: no bot message left in the chat shows an unfinished state (a "⏳" or
  progress line, "Sending the result…", a Confirm prompt), but for the `residual` message
  ids a test names as a known residual of its crash (one whose answer was lost: see
  tests/test_crash_points.py, "status in flight").

Each request goes to a chat of its own, so everything the bot posts in that chat is about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.models import TERMINAL_STATES, Delivery, JobState
from bot.ports import JobStore
from sandbox import SandboxGateway
from tests.conftest import API_KEY
from tests.fakes.telegram_api import FakeTelegram

__all__ = [
    "CRASH_WAIT_S",
    "SETTLE_S",
    "TOKEN",
    "Asked",
    "RunProcess",
    "ask",
    "judge",
    "run_env",
    "seen",
    "settle",
    "unfinished",
]

TOKEN = "7012345678:AAHcrash-Token_for-genrelay-tests-01"
CRASH_WAIT_S = 30.0  # for the first process to reach its crash point and die
SETTLE_S = 20.0  # from its READY_LINE, for the second process to bring every request to its end
LINGER_S = 0.5  # watched once everything looks settled, for anything posted late
STOP_WAIT_S = 10.0  # after SIGTERM, before SIGKILL
READY_LINE = "telegram: connected as"  # logged once the adapter (and its sink) is up
LOG_TAIL_LINES = 25

SEND_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "sendDocument", "sendVideo", "sendAnimation", "sendMediaGroup"}
)
MEDIA_KEYS = ("photo", "video", "document", "animation")


def run_env(
    tmp_path: Path,
    sandbox: SandboxGateway,
    fake: FakeTelegram,
    *,
    crash_at: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of a `genrelay run` on the fakes, with a short fixed poll schedule and
    short timeouts; `crash_at` sets GENRELAY_CRASH_AT (bot/faults.py)."""
    from bot.config import Settings
    from bot.faults import CRASH_ENV

    names = {name.upper() for name in Settings.model_fields} | {CRASH_ENV}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_BASE_URL=fake.api_base,
        TELEGRAM_FILE_BASE_URL=fake.file_base,
        AA_BASE_URL=sandbox.base_url,
        AA_API_KEY=API_KEY,
        DATABASE_URL=f"sqlite:///{tmp_path / 'genrelay.db'}",
        DATA_DIR=str(tmp_path / "data"),
        HTTP_PORT="0",
        POLL_POLICY="fixed",
        POLL_FIRST_DELAY_S="0.1",
        POLL_INTERVAL_S="0.1",
        PROGRESS_INTERVAL_S="0.2",
        GATEWAY_TIMEOUT_S="2",
        SYNC_TIMEOUT_S="5",
        LOG_LEVEL="INFO",
        PTB_TIMEDELTA="true",
    )
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    env.update(extra)
    return env


class RunProcess:
    """One `python -m bot run` subprocess, its output in a log file."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.killed_by_fake = False

    @classmethod
    async def start(cls, env: dict[str, str], log_path: Path) -> RunProcess:
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        return cls(proc, log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill_now(self, *_: Any) -> None:
        """SIGKILL it at once: a fake's hook, run when the fake receives a given request."""
        if self.proc.returncode is None and not self.killed_by_fake:
            self.killed_by_fake = True
            os.kill(self.proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_killed(self, timeout: float, point: str) -> None:
        """Wait for it to die of SIGKILL (exit code -9); fail when it did not within `timeout`
        (the point was never reached) or ended otherwise. Reaps it, so its pid is gone."""
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            await self.stop()
            raise AssertionError(
                f"the process was not killed at {point!r} within {timeout:.0f} s "
                f"(the point was never reached); its log ends:\n{self.log_tail()}"
            ) from None
        assert code == -signal.SIGKILL, (
            f"the process ended with {code}, not -9 (SIGKILL at {point!r}); "
            f"its log ends:\n{self.log_tail()}"
        )

    async def wait_ready(self, timeout: float) -> None:
        """Wait until it logs READY_LINE: its signal handlers are installed and its Telegram
        sink is registered, so it delivers (and a SIGTERM is a graceful stop). Fails when
        it ended first or did not get there within `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while READY_LINE not in self.log_path.read_text(errors="replace"):
            if self.proc.returncode is not None or loop.time() >= deadline:
                how = (
                    f"ended with {self.proc.returncode}"
                    if self.proc.returncode is not None
                    else f"was not up within {timeout:.0f} s"
                )
                raise AssertionError(f"the process {how}; its log ends:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it is still there after STOP_WAIT_S; its exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_WAIT_S):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode


@dataclass(frozen=True)
class Asked:
    """A request a user sent: its message, in a chat of its own, and its prompt."""

    chat_id: int
    message_id: int
    prompt: str
    text: str


def ask(
    fake: FakeTelegram,
    chat_id: int,
    command: str,
    prompt: str,
    *,
    photo: bytes | None = None,
) -> Asked:
    """`command prompt` from a user in group `chat_id` (a photo's caption when `photo`)."""
    user = fake.user(4242, "Ann", "ann")
    chat = fake.group(chat_id, f"crash test {chat_id}")
    text = f"{command} {prompt}"
    if photo is None:
        message = fake.send_text(chat, user, text)
    else:
        message = fake.send_photo(chat, user, photo, caption=text)
    return Asked(chat_id, int(message["message_id"]), prompt, text)


def unfinished(text: str) -> bool:
    """A status line of a job that has not ended (bot/messages.py: progress_text and
    confirm_text), as opposed to a result or a final answer."""
    return (
        text.startswith(("⏳", "🎨"))
        or text.endswith("Sending the result…")
        or "Press Confirm" in text
    )


def _role(method: str, message: dict[str, Any]) -> str:
    if method == "sendMessage":
        return "status line" if unfinished(str(message.get("text", ""))) else "text"
    return method.removeprefix("send").lower()


def _show(message: dict[str, Any]) -> str:
    body = message.get("text") or message.get("caption") or ""
    kind = next((k for k in MEDIA_KEYS if k in message), "text")
    reply = (message.get("reply_to_message") or {}).get("message_id")
    return f"#{message.get('message_id')} {kind} (reply to {reply}): {body[:90]!r}"


def _bot_messages(fake: FakeTelegram, chat_id: int) -> list[dict[str, Any]]:
    """The bot's messages still in the chat (deleted ones are gone, edits applied)."""
    return [
        m
        for (cid, _), m in sorted(fake.messages.items())
        if cid == chat_id and (m.get("from") or {}).get("id") == fake.bot_id
    ]


def seen(fake: FakeTelegram, sandbox: SandboxGateway, asked: Sequence[Asked]) -> str:
    """What the fakes recorded, for failure messages."""
    lines = []
    for a in asked:
        lines.append(f"chat {a.chat_id}, request #{a.message_id} {a.text!r}:")
        for call in fake.calls:
            if str(call.chat_id) != str(a.chat_id):
                continue
            what = call.params.get("text") or call.params.get("caption") or ""
            mid = call.params.get("message_id") or (call.result or {}).get("message_id", "")
            status = "ok" if call.ok else f"{call.status} {call.error}"
            lines.append(f"  bot {call.method} {mid} [{status}] {str(what)[:90]!r}")
        for m in _bot_messages(fake, a.chat_id):
            lines.append(f"  left in chat: {_show(m)}")
    offsets = [
        f"{c.params.get('offset', 0)}{'' if c.ok else ' (cut off)'}"
        for c in fake.calls
        if c.method == "getUpdates"
    ]
    lines.append(f"getUpdates offsets, in order of their ends: {', '.join(offsets)}")
    creates = [f"{r.method} {r.path}" for r in sandbox.create_calls()]
    lines.append(f"gateway create calls: {creates}")
    return "\n".join(lines)


async def judge(
    fake: FakeTelegram,
    sandbox: SandboxGateway,
    store: JobStore,
    asked: Sequence[Asked],
    *,
    crashes: int,
    residual: Collection[int] = (),
) -> list[str]:
    """Every broken invariant, in words (empty: all hold). `residual`: bot message ids that
    may stay showing an unfinished state (the known residual of a crash)."""
    problems: list[str] = []
    for a in asked:
        left = _bot_messages(fake, a.chat_id)
        answers = [
            m
            for m in left
            if (m.get("reply_to_message") or {}).get("message_id") == a.message_id
            and (any(k in m for k in MEDIA_KEYS) or not unfinished(str(m.get("text", ""))))
        ]
        if not answers:
            problems.append(
                f"request lost: {a.text!r} (message {a.message_id}) got no result "
                "and no final answer"
            )
        creates = [r for r in sandbox.create_calls() if a.prompt.encode() in r.body]
        if len(creates) > 1:
            problems.append(
                f"task created twice: the gateway saw {len(creates)} create calls for {a.prompt!r}"
            )
        sends: Counter[str] = Counter()
        for call in fake.sent():
            if call.method in SEND_METHODS and str(call.chat_id) == str(a.chat_id):
                results = call.result if isinstance(call.result, list) else [call.result]
                sends[_role(call.method, results[0])] += 1
        duplicates = {role: n - 1 for role, n in sends.items() if n > 1}
        if sum(duplicates.values()) > crashes:
            problems.append(
                f"{sum(duplicates.values())} duplicate messages after {crashes} crash(es) "
                f"for {a.text!r}: {dict(sends)} sent"
            )
        orphans = [
            m
            for m in left
            if "text" in m and unfinished(str(m["text"])) and int(m["message_id"]) not in residual
        ]
        if orphans:
            problems.append(
                "orphan status: " + "; ".join(_show(m) for m in orphans) + " left showing"
            )
    for job in await store.recent(1000):
        finished = job.state in TERMINAL_STATES and (
            job.state is JobState.REJECTED
            or job.delivery in (Delivery.DELIVERED, Delivery.UNDELIVERABLE)
        )
        if not finished:
            problems.append(
                f"job left unfinished: {job.id} ({job.model}, {job.prompt!r}) is "
                f"{job.state.value}, delivery {job.delivery.value}"
            )
    return problems


async def settle(
    fake: FakeTelegram,
    sandbox: SandboxGateway,
    store: JobStore,
    asked: Sequence[Asked],
    *,
    crashes: int,
    residual: Collection[int] = (),
    timeout: float = SETTLE_S,
) -> list[str]:
    """Judge until every invariant holds (then once more after LINGER_S, for anything
    posted late) or `timeout` passed; the last judgement."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        problems = await judge(fake, sandbox, store, asked, crashes=crashes, residual=residual)
        if not problems:
            await asyncio.sleep(LINGER_S)
            return await judge(fake, sandbox, store, asked, crashes=crashes, residual=residual)
        if loop.time() >= deadline:
            return problems
        await asyncio.sleep(0.1)
