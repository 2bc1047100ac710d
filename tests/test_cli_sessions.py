"""`genrelay sessions [--json]` and `genrelay sessions export ID DIR`, through the real entry
point, on an in-memory SessionRecords (the session store is wired in by the composition
root; these tests pin the verbs' output)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from bot.config import Settings
from bot.main.cli import main
from bot.main.sessions_cli import SessionRecords
from bot.main.wiring import open_core
from bot.models import Origin
from bot.sessions import GalleryPage, SessionFigures
from tests.gallery_sample import KEY, STARTED, sample_page


class MemorySessions:
    """SessionRecords over pages held in memory, newest first."""

    def __init__(self, pages: Sequence[GalleryPage]) -> None:
        self.pages = list(pages)

    async def list_sessions(self) -> Sequence[SessionFigures]:
        return [p.figures for p in self.pages]

    async def gallery_page_by_id(self, session_id: str) -> GalleryPage | None:
        return next((p for p in self.pages if p.figures.session.id == session_id), None)


def running_session() -> GalleryPage:
    """A second session, still open, in a Discord thread, with nothing made yet."""
    page = sample_page(ended=False)
    session = dataclasses.replace(
        page.figures.session,
        id="m7qa",
        gallery_key="Zz9_other-key",
        platform="discord",
        chat_id="555",
        thread_id="777",
        theme="Robots \x1b[31mgardening\x1b[0m in the rain, in the style of a children's book",
        started_at=STARTED + 86400,
        ends_at=STARTED + 86400 + 3600,
    )
    figures = SessionFigures(session=session, entries=0, people=0, spent_usd=0.0)
    return GalleryPage(figures=figures, entries=(), files={})


def opener(records: SessionRecords) -> object:
    @contextlib.asynccontextmanager
    async def open_sessions(settings: Settings) -> AsyncIterator[SessionRecords]:
        yield records

    return open_sessions


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    # main() in this process: it must not take over the root logger from pytest's capture
    # (the other CLI tests run it in a subprocess)
    monkeypatch.setattr("bot.main.cli.setup_logging", lambda *args, **kwargs: None)
    return tmp_path / "data"


def run(records: SessionRecords, *argv: str) -> int:
    return main(["sessions", *argv], open_sessions=opener(records))  # type: ignore[arg-type]


def test_sessions_lists_each_with_its_figures(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = MemorySessions([running_session(), sample_page()])
    assert run(records) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "id",
        "started (UTC)",
        "ends / ended (UTC)",
        "entries",
        "people",
        "spent",
        "votes",
        "place",
        "gallery",
        "theme",
    ]
    assert re.split(r"\s{2,}", lines[1]) == [
        "m7qa",
        "2026-05-06 16:53",
        "open, ends 2026-05-06 17:53",
        "0",
        "0",
        "$0.00",
        "0",
        "discord:555/777",
        "Zz9_other-key",
        "Robots [31mgardening[0m in the rain, in…",  # no escape sequence, one line
    ]
    assert re.split(r"\s{2,}", lines[2]) == [
        "k3f9",
        "2026-05-05 16:53",
        "ended 2026-05-05 17:23",
        "6",
        "6",
        "$1.85",
        "16",
        "telegram:-1001234",
        KEY,
        "Lighthouses at dawn",
    ]
    assert len(lines) == 3


def test_sessions_json_and_gallery_links(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://bot.example.org/")
    assert run(MemorySessions([running_session(), sample_page()]), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["m7qa", "k3f9"]
    assert rows[1] == {
        "id": "k3f9",
        "theme": "Lighthouses at dawn",
        "platform": "telegram",
        "chat_id": "-1001234",
        "thread_id": None,
        "started_by": "Ann",
        "started_at": "2026-05-05T16:53:20+00:00",
        "ends_at": "2026-05-05T17:23:20+00:00",
        "ended_at": "2026-05-05T17:23:20+00:00",
        "open": False,
        "entries": 6,
        "people": 6,
        "spent_usd": 1.85,
        "votes": 16,
        "budget_usd": 5.0,
        "per_person": 3,
        "video": True,
        "gallery_key": KEY,
        "gallery_url": f"https://bot.example.org/sessions/{KEY}",
    }
    assert rows[0]["open"] is True and rows[0]["ended_at"] is None
    assert run(MemorySessions([running_session()])) == 0
    assert "https://bot.example.org/sessions/Zz9_other-key" in capsys.readouterr().out


def test_no_sessions_yet(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(MemorySessions([])) == 0
    assert capsys.readouterr().out == "no sessions yet\n"
    assert run(MemorySessions([]), "--json") == 0
    assert capsys.readouterr().out == "[]\n"


def test_export_writes_the_gallery_to_a_folder(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = sample_page(data_dir / "results")
    out = tmp_path / "export"
    assert run(MemorySessions([running_session(), page]), "export", "k3f9", str(out)) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out / 'index.html'}\n"
    assert "the gallery of session k3f9 (6 entries, 5 files) is in" in captured.err
    text = (out / "index.html").read_text()
    assert "<h1>Lighthouses at dawn</h1>" in text
    assert '<span class="model">Nano Banana Pro</span>' in text  # the catalog's names
    assert '<span class="model">Veo 3.1 Fast</span>' in text
    assert len(list((out / "files").iterdir())) == 5
    assert (out / "top.html").is_file()


def test_export_refuses_an_unknown_session_or_a_file_as_folder(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = MemorySessions([sample_page()])
    assert run(records, "export", "zzzz", str(tmp_path / "out")) == 2
    assert "there is no session zzzz; `genrelay sessions` lists them." in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "taken").write_text("x")
    assert run(records, "export", "k3f9", str(tmp_path / "taken")) == 2
    assert "is a file; give a folder to write the gallery in." in capsys.readouterr().err


def test_sessions_reads_the_real_store(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The composition root's own opener: a session started through the core is listed."""
    settings = make_settings()
    monkeypatch.setenv("DATABASE_URL", settings.database_url)

    async def start_one() -> str:
        async with open_core(settings) as core:
            origin = Origin(platform="telegram", chat_id="-100", user_id="1", user_name="Ann")
            spec = core.sessions.parse_start("kites over the bay --for 2h")
            return (await core.sessions.start(origin, spec, is_admin=True)).id

    session_id = asyncio.run(start_one())
    assert main(["sessions", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == session_id and listed["theme"] == "kites over the bay"
