"""The composition root: the command line (`cli.py`) and the wiring (`wiring.py`), the one
place in the project that imports adapter and storage implementations."""

from __future__ import annotations

__all__: list[str] = []
