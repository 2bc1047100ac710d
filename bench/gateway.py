"""The sandbox gateway in a process of its own, its tasks running from the start (no queued
phase): `python -m bench.gateway --port P --speed S`. Used by bench.scale so that the
gateway's work is not counted as the tracker's."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence

import bot.sandbox

__all__ = ["main"]


async def _serve(port: int, speed: float, api_key: str | None, *, ready: bool) -> None:
    bot.sandbox.QUEUED_FRACTION = 0.0  # running (and reporting progress) at once
    async with bot.sandbox.SandboxGateway(port=port, speed=speed, api_key=api_key):
        if ready:
            print("READY", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--api-key")
    parser.add_argument("--ready", action="store_true", help="print READY once listening")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.speed, args.api_key, ready=args.ready))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
