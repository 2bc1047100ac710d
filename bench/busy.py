"""Busy chats (issue 12): many people ask at once; how soon does each result reach its chat,
and what else does the bot send meanwhile?

    python -m bench.busy [--workload private|groups|both] [--limits on|off] [--speed F]

The real product: python-telegram-bot through the `TelegramAdapter` (its default flood
control) and a real `Core.run`, with its default polling, progress interval, tracker
concurrency and per-user / per-chat concurrency (daily quotas and budgets are lifted: the
run is about traffic, not money). The fake Bot API (bench/tg_server.py, enforcing
Telegram's limits with `--limits on`, the default: 30 messages a second for the bot, 20 a
minute per group, 429 with retry_after beyond) and the sandbox gateway (bench/gateway.py,
each task scripted by its prompt) run in processes of their own.

Workloads (durations varied as bench/workload.py does: log-normal around the typical run,
progress curves of many shapes; the sandbox reports `queued` for the first 10 % of a run):

- private: 300 people in 300 private chats send at once: 200 `/imagine` (~20 s each) and
  100 `/video` (~2 min);
- groups: 10 groups (negative chat ids), 5 people in each asking at once, 2 of 3 images.

`--speed F` multiplies every run's duration (0.25: a quick check); the issue's figures are at
speed 1. Everything the bot sends is read back from the fake Bot API, mapped to its job by
the job store (SQLite, read after the run): a message replying to the job's request, an edit
or delete of its status message, a file replying to one of its results. Per kind:

- **done → upload**: from upstream done (the moment the gateway would first answer with the
  result: task created + its duration) to the first sendPhoto / sendVideo / sendDocument /
  sendAnimation for that job the fake Bot API accepted, in seconds (p50 / p95 / max). Both
  ends are time.monotonic() of this machine, read in the gateway's and the fake's processes.
- **msgs/job**, split into **result** and **status**. Result: media sends for the job, and
  text replies to its request other than its status message (a link or a failure); status:
  its status message, the edits of it and its deletion. Only requests the fake accepted
  count as messages.
- **done → seen**, **seen → upload**: the same delay split at the poll that saw the result
  (the gateway's time of its answer): the polling's share, and the rest (the tracker's
  save, the notifier's claim, the download, the upload's turn), p95 of each.
- **status req/job**: the gateway's status requests (polls) for the job's task.
- **429s**: requests about the job's messages the fake answered 429 (its flood limits).
- **stale edits**: accepted `editMessageText` of a job's status message that arrived when
  the job had already moved past what it shows:
  (a) a pre-submit text ("In line…", "Queued on…", "Sending to…") arriving after the job
      was submitted upstream (its `submitted_at` in the store);
  (b) any not-yet-done text (those, "Waiting in … queue", a progress bar) arriving after
      upstream done;
  (c) a text older than one the message already showed (its first text included): by
      rank received ("In line…" or "Queued on…") < sending < waiting < progress (by %) <
      finished, and among "In line…" texts a later place than one shown (2nd after 1st).
  An edit counts once however many of these it meets; the table also gives how many met
  each rule, as (a/b/c).
- **multi-msg results**: jobs whose result took more than one message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bench.ack import TG_TOKEN, _process
from bench.common import API_KEY, bench_settings, free_port, running_core
from bench.report import percentile, table
from bench.workload import RunSpec, make_runs
from bot.config import Settings
from bot.main.wiring import open_core

__all__ = ["Asked", "JobStats", "main", "measure", "run_workload"]

WORKLOADS = ("private", "groups")
FIRST_USER = 7_000_000
FIRST_GROUP = -1002000000000
MEDIA = frozenset({"sendPhoto", "sendVideo", "sendDocument", "sendAnimation", "sendMediaGroup"})
QUEUED_FRACTION = 0.1  # the sandbox's own


@dataclass(frozen=True)
class Asked:
    """One person's request: where, who, what, and how its run behaves."""

    chat_id: int
    user_id: int
    command: str
    prompt: str
    run: RunSpec

    @property
    def text(self) -> str:
        return f"/{self.command} {self.prompt}"


def workload(name: str, speed: float, seed: int = 7) -> list[Asked]:
    """The people asking at once, each with a unique prompt that scripts its run."""
    runs = make_runs(200, seed=seed, spread_s=0.0)
    images = [r for r in runs if r.kind == "image"]
    videos = [r for r in runs if r.kind == "video"]
    asked: list[Asked] = []

    def add(chat_id: int, user_id: int, run: RunSpec) -> None:
        i = len(asked)
        scaled = RunSpec(
            run.label, run.model, run.kind, run.duration * speed, run.curve_name, run.curve, 0.0
        )
        command = "imagine" if run.kind == "image" else "video"
        asked.append(Asked(chat_id, user_id, command, f"busy run {i} {run.curve_name}", scaled))

    if name == "private":
        picked = images[:200] + videos[:100]
        for i, run in enumerate(picked):
            add(FIRST_USER + i, FIRST_USER + i, run)
    else:
        ni = nv = 0
        for g in range(10):
            for p in range(5):
                i = g * 5 + p
                if i % 3 == 2:
                    run, nv = videos[nv], nv + 1
                else:
                    run, ni = images[ni], ni + 1
                add(FIRST_GROUP - g, FIRST_USER + i, run)
    return asked


# -- status texts (bot/messages.py progress_text) -------------------------------------------

_PERCENT = re.compile(r"(\d+)%")
_PLACE = re.compile(r"(\d+)(?:st|nd|rd|th) in this chat")


def line_place(text: str) -> int | None:
    """The place in line an "In line…" text shows (1 for 1st); None for other texts."""
    found = _PLACE.search(text) if text.startswith("⏳ In line") else None
    return int(found.group(1)) if found else None


def status_rank(text: str) -> float | None:
    """How far along a status text is; None for texts that are not a job's progress."""
    if text.startswith(("⏳ In line", "⏳ Queued on")):  # both: received, not yet sent
        return 1.0
    if text.startswith("⏳ Sending to"):
        return 2.0
    if text.startswith("⏳ Waiting in"):
        return 3.0
    if text.startswith("🎨"):
        found = _PERCENT.search(text)
        return 4.0 + (int(found.group(1)) if found else 0) / 1000
    if text.startswith("✅"):
        return 5.0
    return None


PRE_SUBMIT = 2.0  # ranks up to "Sending to…"
DONE = 5.0


@dataclass
class JobStats:
    job_id: str
    kind: str
    delivered: bool = False
    delay_s: float | None = None
    seen_s: float | None = None  # upstream done -> the poll that saw it answered
    result_msgs: int = 0
    status_msgs: int = 0
    polls: int = 0
    throttled: int = 0
    stale: int = 0
    stale_texts: list[str] = field(default_factory=list)
    stale_by: dict[str, int] = field(default_factory=lambda: {"a": 0, "b": 0, "c": 0})


def measure(
    jobs: Sequence[dict[str, Any]],
    calls: Sequence[dict[str, Any]],
    tasks: dict[str, dict[str, Any]],
    wall_minus_mono: float,
) -> list[JobStats]:
    """Each job's figures from the store's rows, the fake's calls and the gateway's tasks
    (see the module docstring). `wall_minus_mono` turns the store's times (time.time())
    into time.monotonic()."""
    by_request: dict[tuple[int, int], dict[str, Any]] = {}
    by_status: dict[tuple[int, int], dict[str, Any]] = {}
    for row in jobs:
        chat = int(row["chat_id"])
        if row["origin_message_id"] is not None:
            by_request[(chat, int(row["origin_message_id"]))] = row
        if row["status_message_id"]:
            by_status[(chat, int(row["status_message_id"]))] = row
    stats = {j["id"]: JobStats(j["id"], j["kind"]) for j in jobs}
    results: dict[tuple[int, int], dict[str, Any]] = {}  # result message -> its job
    shown: dict[str, float] = {}  # job id -> the furthest status rank shown
    places: dict[str, int] = {}  # job id -> the best place in line shown
    for call in sorted(calls, key=lambda c: c["time"]):
        try:
            chat = int(call["chat_id"])
        except (TypeError, ValueError):
            continue
        method = call["method"]
        job: dict[str, Any] | None = None
        status_call = False
        if call["reply_to"] is not None:
            key = (chat, int(call["reply_to"]))
            job = by_request.get(key) or results.get(key)
        if job is None and call["message_id"] is not None:
            job = by_status.get((chat, int(call["message_id"])))
            status_call = job is not None
        if job is None:
            continue
        st = stats[job["id"]]
        if call["throttled"]:
            st.throttled += 1
        if call["status"] != 200:
            continue
        sent = [int(m) for m in call["sent"] if m is not None]
        is_status_post = (
            method == "sendMessage"
            and job["status_message_id"] is not None
            and int(job["status_message_id"]) in sent
        )
        if method in MEDIA:
            st.result_msgs += len(sent) or 1
            for m in sent:
                results[(chat, m)] = job
            task = tasks.get(job["upstream_task_id"] or "")
            if st.delay_s is None and task is not None:
                st.delay_s = call["time"] - float(task["done_at"])
                if task.get("finished") is not None:
                    st.seen_s = float(task["finished"]) - float(task["done_at"])
        elif is_status_post:
            st.status_msgs += 1
            rank = status_rank(call["text"] or "")
            if rank is not None:
                shown[job["id"]] = rank
                if (place := line_place(call["text"] or "")) is not None:
                    places[job["id"]] = place
        elif status_call:
            st.status_msgs += 1
            if method == "editMessageText":
                rank = status_rank(call["text"] or "")
                if rank is None:
                    continue
                task = tasks.get(job["upstream_task_id"] or "")
                submitted = job["submitted_at"]
                place = line_place(call["text"])
                later_place = place is not None and place > places.get(job["id"], place)
                why = {
                    "a": submitted is not None
                    and rank <= PRE_SUBMIT
                    and call["time"] > float(submitted) - wall_minus_mono,
                    "b": task is not None and rank < DONE and call["time"] > float(task["done_at"]),
                    "c": rank < shown.get(job["id"], -1.0) or later_place,
                }
                if any(why.values()):
                    st.stale += 1
                    st.stale_texts.append(str(call["text"]))
                    for rule, met in why.items():
                        st.stale_by[rule] += met
                shown[job["id"]] = max(rank, shown.get(job["id"], -1.0))
                if place is not None:
                    places[job["id"]] = min(place, places.get(job["id"], place))
        elif method == "sendMessage":
            st.result_msgs += 1  # a link or a failure, replying to the request
            for m in sent:
                results[(chat, m)] = job
    for row in jobs:
        task = tasks.get(row["upstream_task_id"] or "")
        st = stats[row["id"]]
        st.polls = int(task["polls"]) if task else 0
        st.delivered = row["delivery"] == "delivered"
    return list(stats.values())


# -- one run ----------------------------------------------------------------------------------


def _settings(tmp: Path, gateway_url: str, api_root: str) -> Settings:
    """The product's defaults but for quotas and budgets (lifted) and a quiet log."""
    defaults = {
        name: Settings.model_fields[name].default
        for name in (
            "progress_interval_s",
            "tracker_concurrency",
            "user_concurrent_jobs",
            "chat_concurrent_jobs",
        )
        if name in Settings.model_fields
    }
    return bench_settings(
        tmp,
        gateway_url,
        telegram_bot_token=SecretStr(TG_TOKEN),
        telegram_api_base_url=f"{api_root}/bot",
        telegram_file_base_url=f"{api_root}/file/bot",
        **defaults,
    )


def _jobs(db: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM jobs")]
    for row in rows:
        origin = json.loads(row["origin"]) if row.get("origin") else {}
        row["origin_message_id"] = origin.get("message_id")
    return rows


def _settled(db: Path, n: int) -> int:
    """How many of the n jobs are delivered or given up on."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (done,) = conn.execute(
            "SELECT count(*) FROM jobs WHERE delivery IN ('delivered', 'undeliverable')"
        ).fetchone()
    return int(done)


@dataclass
class Run:
    workload: str
    stats: list[JobStats]
    asked: int
    throttled_total: int
    messages_total: int
    wall_s: float
    error: str | None = None


async def run_workload(name: str, *, limits: bool, speed: float, dump: Path | None = None) -> Run:
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    from adapters.telegram import TelegramAdapter

    asked = workload(name, speed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="genrelay-busy-") as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "script.json"
        script.write_text(
            json.dumps(
                {a.prompt: {"duration": a.run.duration, "curve": a.run.curve_name} for a in asked}
            )
        )
        port = free_port()
        gateway = (
            "bench.gateway",
            *("--port", str(port), "--api-key", API_KEY, "--script", str(script)),
            *("--queued-fraction", str(QUEUED_FRACTION), "--control", "--ready"),
        )
        fake = ("bench.tg_server", "--token", TG_TOKEN, "--limits", "on" if limits else "off")
        async with (
            _process(*fake) as (api_port, tg_control),
            _process(*gateway) as (gw_control,),
            httpx.AsyncClient(timeout=60) as http,
        ):
            settings = _settings(tmp, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}")
            db = tmp / "bench.db"
            async with (
                open_core(settings) as core,
                running_core(core),
                TelegramAdapter(core, settings, poll_timeout_s=1.0),
            ):
                await asyncio.sleep(0.5)
                answer = await http.post(
                    f"http://127.0.0.1:{tg_control}/busy/push",
                    json=[
                        {"chat_id": a.chat_id, "user_id": a.user_id, "text": a.text} for a in asked
                    ],
                )
                answer.raise_for_status()
                longest = max(a.run.duration for a in asked)
                deadline = time.monotonic() + longest * 1.5 + 120
                while time.monotonic() < deadline:
                    await asyncio.sleep(1.0)
                    if db.exists() and _settled(db, len(asked)) >= len(asked):
                        break
                await asyncio.sleep(1.0)  # the last status deletions
            calls = (await http.get(f"http://127.0.0.1:{tg_control}/busy/calls")).json()
            tasks = (await http.get(f"http://127.0.0.1:{gw_control}/tasks")).json()
        jobs = _jobs(db)
    if dump is not None:  # everything measured, for a closer look
        dump.write_text(json.dumps({"jobs": jobs, "calls": calls, "tasks": tasks}, indent=1))
    offset = time.time() - time.monotonic()
    stats = measure(jobs, calls, tasks, offset)
    counted = {"sendMessage", "editMessageText", "deleteMessage", *MEDIA}
    return Run(
        workload=name,
        stats=stats,
        asked=len(asked),
        throttled_total=sum(1 for c in calls if c["throttled"]),
        messages_total=sum(1 for c in calls if c["status"] == 200 and c["method"] in counted),
        wall_s=time.monotonic() - started,
    )


def render(run: Run) -> str:
    rows = []
    for kind in ("image", "video"):
        stats = [s for s in run.stats if s.kind == kind]
        if not stats:
            continue
        delays = [s.delay_s for s in stats if s.delay_s is not None]
        seen = [s.seen_s for s in stats if s.seen_s is not None]
        after = [
            s.delay_s - s.seen_s for s in stats if s.delay_s is not None and s.seen_s is not None
        ]
        n = len(stats)
        rows.append(
            [
                kind,
                f"{sum(s.delivered for s in stats)}/{n}",
                f"{percentile(delays, 50):.1f}",
                f"{percentile(delays, 95):.1f}",
                f"{max(delays, default=0.0):.1f}",
                f"{percentile(seen, 95):.1f}" if seen else "-",
                f"{percentile(after, 95):.1f}" if after else "-",
                f"{sum(s.result_msgs + s.status_msgs for s in stats) / n:.2f}",
                f"{sum(s.result_msgs for s in stats) / n:.2f}",
                f"{sum(s.status_msgs for s in stats) / n:.2f}",
                f"{sum(s.polls for s in stats) / n:.1f}",
                str(sum(s.throttled for s in stats)),
                f"{sum(s.stale for s in stats)} ("
                + "/".join(str(sum(s.stale_by[r] for s in stats)) for r in "abc")
                + ")",
                str(sum(1 for s in stats if s.result_msgs > 1)),
            ]
        )
    head = (
        f"workload {run.workload}: {run.asked} asked, {len(run.stats)} jobs, "
        f"{run.messages_total} messages accepted, {run.throttled_total} requests answered 429 "
        f"in all, {run.wall_s:.0f} s"
    )
    return (
        head
        + "\n"
        + table(
            [
                "kind",
                "delivered",
                "done→upload p50 s",
                "p95 s",
                "max s",
                "done→seen p95",
                "seen→upload p95",
                "msgs/job",
                "result",
                "status",
                "gateway polls/job",
                "429s",
                "stale edits (a/b/c)",
                "multi-msg results",
            ],
            rows,
        )
    )


async def _main(args: argparse.Namespace) -> None:
    names = WORKLOADS if args.workload == "both" else (args.workload,)
    mode = f"limits {args.limits}, speed {args.speed:g}"
    for name in names:
        try:
            dump = Path(f"{args.dump}.{name}.json") if args.dump else None
            run = await run_workload(name, limits=args.limits == "on", speed=args.speed, dump=dump)
        except Exception as exc:  # a benchmark reports, it does not fail the build
            print(f"\nworkload {name} ({mode}) failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        print(f"\n({mode})\n{render(run)}", flush=True)
        if args.verbose:
            for s in run.stats:
                for text in s.stale_texts:
                    print(f"  stale {s.job_id} {s.kind}: {text[:70]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.busy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workload", choices=(*WORKLOADS, "both"), default="both")
    parser.add_argument("--limits", choices=("on", "off"), default="on")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="multiplies every run's duration (default 1)"
    )
    parser.add_argument("--verbose", action="store_true", help="list the stale edits")
    parser.add_argument(
        "--dump", help="write the jobs, the bot's requests and the tasks to DUMP.<workload>.json"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
