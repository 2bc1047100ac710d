"""``python -m sandbox``: the sandbox gateway on its own, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Sequence

from sandbox.server import SandboxGateway

__all__ = ["main"]


async def _serve(args: argparse.Namespace) -> None:
    async with SandboxGateway(
        host=args.host, port=args.port, api_key=args.api_key, speed=args.speed
    ) as gateway:
        print(f"sandbox gateway listening on {gateway.base_url} (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sandbox --port 8095 [--api-key K] [--speed S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Run the simulated AA gateway."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument("--api-key", default=None, help="require this X-API-Key (default: none)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="multiplies every task duration (0.5 = 2x faster)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
