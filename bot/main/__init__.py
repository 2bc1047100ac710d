"""The composition root: the command line and the wiring (`wiring.py`), the one place in the
project that imports adapter and storage implementations. The command line: `cli.py` (the
entry point, generate, run, demo), `commands.py` (the parser), `output.py` (exit codes and
JSON), `listings.py` (models, jobs), `sessions_cli.py` (sessions, export)."""

from __future__ import annotations

__all__: list[str] = []
