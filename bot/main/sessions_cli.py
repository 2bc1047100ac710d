"""`genrelay sessions`: the creative sessions with their figures, as a table or as JSON, and
`sessions export ID DIR`, which writes a session's gallery as files that open from disk."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from bot.catalog import Catalog
from bot.config import Settings
from bot.gallery import export_gallery, listed_files
from bot.main.output import EXIT_OK, EXIT_REJECTED, iso
from bot.main.wiring import build_catalog, open_core
from bot.media import MediaStore
from bot.sessions import GalleryPage, SessionFigures

__all__ = [
    "OpenSessions",
    "SessionRecords",
    "cmd_sessions",
    "model_names",
    "open_session_records",
    "session_json",
]


class SessionRecords(Protocol):
    """What `genrelay sessions` reads: the session use cases (bot/session_service.py)."""

    async def list_sessions(self) -> Sequence[SessionFigures]:
        """The sessions with their figures, newest first."""
        ...

    async def gallery_page_by_id(self, session_id: str) -> GalleryPage | None:
        """The gallery page of the session with this (short) id; None when there is none."""
        ...


OpenSessions = Callable[[Settings], AbstractAsyncContextManager[SessionRecords]]


@contextlib.asynccontextmanager
async def open_session_records(settings: Settings) -> AsyncIterator[SessionRecords]:
    """The sessions of DATABASE_URL, opened for reading (nothing recovered, no loop run)."""
    async with open_core(settings, own_jobs_only=True) as core:
        yield core.sessions


def model_names(catalog: Catalog) -> Callable[[str], str]:
    """A model's display name by its code (the code itself when the catalog lost it)."""

    def name(code: str) -> str:
        spec = catalog.resolve(code)
        return spec.name if spec is not None else code

    return name


def _minute(ts: float | None) -> str:
    return (iso(ts) or "-")[:16].replace("T", " ")


def _place(figures: SessionFigures) -> str:
    s = figures.session
    return f"{s.platform}:{s.chat_id}" + (f"/{s.thread_id}" if s.thread_id else "")


def _gallery_url(figures: SessionFigures, public_base_url: str | None) -> str | None:
    key = figures.session.gallery_key
    return f"{public_base_url}/sessions/{key}" if public_base_url else None


def session_json(figures: SessionFigures, *, public_base_url: str | None) -> dict[str, Any]:
    """A session as `genrelay sessions --json` prints it."""
    s = figures.session
    return {
        "id": s.id,
        "theme": s.theme,
        "platform": s.platform,
        "chat_id": s.chat_id,
        "thread_id": s.thread_id,
        "started_by": s.started_by_name or s.started_by,
        "started_at": iso(s.started_at),
        "ends_at": iso(s.ends_at),
        "ended_at": iso(s.ended_at),
        "open": s.open,
        "entries": figures.entries,
        "people": figures.people,
        "spent_usd": round(figures.spent_usd, 4),
        "votes": figures.votes,
        "budget_usd": s.budget_usd,
        "per_person": s.per_person,
        "video": s.video,
        "gallery_key": s.gallery_key,
        "gallery_url": _gallery_url(figures, public_base_url),
    }


def _printable(text: str, limit: int = 40) -> str:
    """A chat's text for the terminal: no control characters (escape sequences), one line."""
    text = "".join(c for c in text if c.isprintable())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_sessions(rows: Sequence[SessionFigures], public_base_url: str | None) -> None:
    if not rows:
        print("no sessions yet")
        return
    header = (
        *("id", "started (UTC)", "ends / ended (UTC)", "entries", "people", "spent", "votes"),
        *("place", "gallery", "theme"),
    )
    table = [
        (
            f.session.id,
            _minute(f.session.started_at),
            ("open, ends " if f.session.open else "ended ")
            + _minute(f.session.ends_at if f.session.open else f.session.ended_at),
            str(f.entries),
            str(f.people),
            f"${f.spent_usd:.2f}",
            str(f.votes),
            _printable(_place(f)),
            _gallery_url(f, public_base_url) or f.session.gallery_key,
            _printable(f.session.theme),
        )
        for f in rows
    ]
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]
    for row in (header, *table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def _export(records: SessionRecords, settings: Settings, session_id: str, out: Path) -> int:
    page = await records.gallery_page_by_id(session_id.strip())
    if page is None:
        print(
            f"genrelay: there is no session {session_id}; `genrelay sessions` lists them.",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    if out.exists() and not out.is_dir():
        print(f"genrelay: {out} is a file; give a folder to write the gallery in.", file=sys.stderr)
        return EXIT_REJECTED
    catalog = build_catalog(settings)
    results = MediaStore(
        settings.data_dir, public_base_url=None, max_reference_bytes=settings.max_reference_bytes
    ).results_dir
    index = export_gallery(
        page,
        results,
        out,
        model_name=model_names(catalog),
    )
    kept = sum(1 for name in listed_files(page) if (out / "files" / name).is_file())
    print(
        f"the gallery of session {page.figures.session.id} "
        f"({len(page.entries)} entries, {kept} files) is in {out}",
        file=sys.stderr,
    )
    print(index)
    return EXIT_OK


async def cmd_sessions(settings: Settings, args: argparse.Namespace, opener: OpenSessions) -> int:
    async with opener(settings) as records:
        if args.sessions_command == "export":
            return await _export(records, settings, args.id, Path(args.dir))
        rows = await records.list_sessions()
    if args.json:
        print(json.dumps([session_json(f, public_base_url=settings.public_base_url) for f in rows]))
    else:
        _print_sessions(rows, settings.public_base_url)
    return EXIT_OK
