"""`python -m bot`: the CLI of the composition root (bot/main/cli.py), as the `genrelay`
console script runs it."""

from __future__ import annotations

import sys

from bot.main.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
