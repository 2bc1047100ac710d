"""The sandbox gateway in a process of its own: `python -m bench.gateway --port P --speed S`.
Used by bench.scale and bench.ack so that the gateway's work is not counted as the bot's.

By default its tasks run from the start (no queued phase). For bench.busy:

    --script FILE          a JSON object, prompt -> {"duration": s, "curve": name} (a curve of
                           bench/workload.py): each task runs as its prompt's entry says
    --queued-fraction F    the share of a run reported as `queued` (the sandbox's own is 0.1)
    --control              with --ready: also serve GET /tasks on a loopback port of its own
                           and print `READY <control port>`

    GET /tasks   {task_id: {"prompt", "created", "duration", "done_at", "polls", "finished"}}
                 times in time.monotonic() seconds of this machine (comparable across
                 processes); done_at is when the gateway would first answer with the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

import sandbox.tasks
from bench.workload import CURVES, RunSpec

__all__ = ["main", "task_times"]


def _runs(path: str | None) -> dict[str, RunSpec]:
    if path is None:
        return {}
    script: dict[str, dict[str, Any]] = json.loads(Path(path).read_text())
    return {
        prompt: RunSpec(
            label=str(entry.get("label", "")),
            model=str(entry.get("model", "")),
            kind=str(entry.get("kind", "")),
            duration=float(entry["duration"]),
            curve_name=str(entry["curve"]),
            curve=CURVES[str(entry["curve"])][0],
            offset=0.0,
        )
        for prompt, entry in script.items()
    }


def task_times(gw: sandbox.SandboxGateway) -> dict[str, dict[str, Any]]:
    """Each task's timing: when it was created, when it is done (its result first
    answerable: after its duration and any late-URL polls), how often it was polled."""
    return {
        task_id: {
            "prompt": task.prompt,
            "created": task.created,
            "duration": task.duration,
            "done_at": task.created + task.duration,
            "late_url_polls": task.late_url_polls,
            "polls": task.polls,
            "finished": task.finished,
        }
        for task_id, task in gw.tasks.items()
    }


async def _serve(args: argparse.Namespace) -> None:
    from bench.common import ScriptedGateway

    sandbox.tasks.QUEUED_FRACTION = args.queued_fraction
    gateway = ScriptedGateway(
        _runs(args.script), port=args.port, speed=args.speed, api_key=args.api_key
    )
    async with gateway as gw:
        runner: web.AppRunner | None = None
        if args.control:

            async def tasks(request: web.Request) -> web.Response:
                return web.json_response(task_times(gw))

            app = web.Application()
            app.router.add_get("/tasks", tasks)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            if args.ready:
                extra = f" {runner.addresses[0][1]}" if runner is not None else ""
                print(f"READY{extra}", flush=True)
            await asyncio.Event().wait()
        finally:
            if runner is not None:
                await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--api-key")
    parser.add_argument("--ready", action="store_true", help="print READY once listening")
    parser.add_argument("--script", help="JSON: prompt -> {duration, curve}")
    parser.add_argument("--queued-fraction", type=float, default=0.0)
    parser.add_argument("--control", action="store_true", help="serve GET /tasks")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
