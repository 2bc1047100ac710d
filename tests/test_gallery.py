"""The gallery of a creative session without a browser: the page (escaping, order,
placeholders), its export to disk, serving it (404s, no path out of the results folder), and
the retention of its files. tests/test_gallery_browser.py opens it in Chromium."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.config import Settings
from bot.gallery import KeptGallery, export_gallery, ordered, render_page
from bot.media import MediaStore, prune_results, result_file
from bot.models import JobState, Kind
from bot.sessions import GalleryPage
from bot.web import WebServer
from tests.gallery_sample import HOSTILE, KEY, job_id, model_name, pages_of, sample_page

HOSTILE_NAME = '<img src=x onerror="alert(1)">'


def render(page: GalleryPage, **kw: object) -> str:
    return render_page(page, file_url=lambda n: f"files/{n}", model_name=model_name, **kw)  # type: ignore[arg-type]


def numbers_in(text: str) -> list[int]:
    return [int(n) for n in re.findall(r'<article class="entry" id="e(\d+)"', text)]


def with_entry(page: GalleryPage, number: int, **changes: object) -> GalleryPage:
    entries = tuple(
        dataclasses.replace(e, **changes) if e.number == number else e  # type: ignore[arg-type]
        for e in page.entries
    )
    return dataclasses.replace(page, entries=entries)


def with_job(page: GalleryPage, number: int, **changes: object) -> GalleryPage:
    entry = next(e for e in page.entries if e.number == number)
    return with_entry(page, number, job=dataclasses.replace(entry.job, **changes))  # type: ignore[arg-type]


# -- the page ----------------------------------------------------------------------------------


def test_the_page_shows_the_session_and_every_entry() -> None:
    text = render(sample_page())
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert "prefers-color-scheme:dark" in text
    assert "<title>Lighthouses at dawn · genrelay session</title>" in text
    assert "<h1>Lighthouses at dawn</h1>" in text
    assert "Started 5 May 2026, 16:53 UTC · ended 17:23 UTC" in text
    for figure in ("<b>6</b> entries", "<b>6</b> people", "<b>$1.85</b> spent", "<b>16</b> votes"):
        assert figure in text
    assert numbers_in(text) == [6, 5, 4, 3, 2, 1]
    for author in ("Ann", "Bob", "Chidi", "Dana", "Eve", "Farid"):
        assert f'<span class="author">{author}</span>' in text
    assert '<span class="num">#2</span>' in text
    assert "The same lighthouse, but the sea is folded paper" in text
    assert 'remix of <a href="#e1">#1 by Ann</a>' in text
    assert 'remix of <a href="#e3">#3 by Chidi</a>' in text
    for name in ("Nano Banana", "Nano Banana Pro", "GPT Image 2", "Veo 3.1 Fast"):
        assert f'<span class="model">{name}</span>' in text
    assert 'aria-label="6 votes">♥ 6</span>' in text
    assert 'aria-label="1 vote">♥ 1</span>' in text
    assert text.count('<img loading="lazy" src="files/jobentry') == 5
    assert (
        '<a href="files/jobentry01-0.png"><img loading="lazy" src="files/jobentry01-0.png"' in text
    )
    assert "<script" not in text  # no script of ours, and none of theirs


def test_open_session_says_until_when_and_an_empty_one_says_so() -> None:
    page = sample_page(ended=False)
    text = render(dataclasses.replace(page, entries=(), files={}))
    assert "Started 5 May 2026, 16:53 UTC · open until 17:23 UTC" in text
    assert '<p class="empty">No entries yet.</p>' in text


def test_top_first_orders_by_votes_then_the_earliest() -> None:
    page = with_entry(sample_page(), 3, votes=4)  # as many as #1, later
    assert numbers_in(render(page, order="top")) == [2, 1, 3, 6, 4, 5]
    assert [e.number for e in ordered(page.entries, "new")] == [6, 5, 4, 3, 2, 1]
    text = render(page, order="top")
    assert '<a href="?order=new">Newest first</a>' in text
    assert '<a href="?order=top" aria-current="page">Top first</a>' in text


def test_every_user_string_is_escaped() -> None:
    page = sample_page()
    session = dataclasses.replace(page.figures.session, theme="</title><script>x()</script>")
    page = dataclasses.replace(page, figures=dataclasses.replace(page.figures, session=session))
    page = with_entry(page, 1, author_name=HOSTILE_NAME)
    page = with_entry(page, 2, remix_of_author=HOSTILE_NAME)
    text = render_page(
        page,
        file_url=lambda n: f'files/{n}" onload="alert(1)',
        model_name=lambda code: f"<i>{code}</i>",
    )
    assert "<script" not in text and "<img src=x" not in text and "<i>" not in text
    assert (
        "&lt;script&gt;window.pwned = 1&lt;/script&gt; a lighthouse of &lt;b&gt;glass&lt;/b&gt; &amp; &quot;quotes&quot;"
        in text
    )
    assert (
        "<title>&lt;/title&gt;&lt;script&gt;x()&lt;/script&gt; · genrelay session</title>" in text
    )
    assert '<span class="author">&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</span>' in text
    assert "#1 by &lt;img src=x onerror=&quot;alert(1)&quot;&gt;</a>" in text
    assert "&lt;i&gt;nanobanana&lt;/i&gt;" in text
    assert 'onload="alert(1)' not in text and "&quot; onload=&quot;alert(1)" in text
    assert HOSTILE not in text


def test_an_entry_without_its_file_shows_a_placeholder_that_says_why() -> None:
    page = sample_page()  # #4, a video, lists a file that is not kept: serving drops it
    page = dataclasses.replace(page, files={n: f for n, f in page.files.items() if n != 4})
    assert "<span>Video no longer kept</span>" in render(page)
    page = with_job(page, 4, state=JobState.RUNNING)
    assert "<span>Still being made…</span>" in render(page)
    page = with_job(page, 4, state=JobState.FAILED, kind=Kind.IMAGE)
    assert "<span>No image: it did not work out</span>" in render(page)


def test_a_video_plays_in_the_page_and_several_files_share_the_card() -> None:
    page = sample_page()
    page = dataclasses.replace(
        page, files={**page.files, 4: ("jobentry04-0.mp4",), 1: ("a-0.png", "a-1.png")}
    )
    text = render(page)
    assert (
        '<video controls preload="metadata" playsinline src="files/jobentry04-0.mp4"></video>'
        in text
    )
    assert '<div class="media many"><a href="files/a-0.png">' in text


# -- export ------------------------------------------------------------------------------------


def test_export_writes_a_folder_that_opens_from_disk(tmp_path: Path) -> None:
    results = tmp_path / "results"
    page = sample_page(results)
    (tmp_path / "secret.png").write_bytes(b"not for the gallery")
    page = dataclasses.replace(page, files={**page.files, 5: ("../secret.png",)})
    out = tmp_path / "out" / "gallery"
    index = export_gallery(page, results, out, model_name=model_name)
    assert index == out / "index.html"
    assert sorted(p.name for p in (out / "files").iterdir()) == [
        "jobentry01-0.png",
        "jobentry02-0.jpg",
        "jobentry03-0.png",
        "jobentry06-0.jpg",
    ]
    assert (out / "files" / "jobentry02-0.jpg").read_bytes() == (
        results / "jobentry02-0.jpg"
    ).read_bytes()
    new, top = index.read_text(), (out / "top.html").read_text()
    assert numbers_in(new) == [6, 5, 4, 3, 2, 1] and numbers_in(top) == [2, 1, 6, 3, 4, 5]
    assert '<a href="top.html">Top first</a>' in new
    assert '<a href="index.html">Newest first</a>' in top
    for text in (new, top):
        links = re.findall(r'src="([^"]+)"', text)
        assert len(links) == 4 and all((out / link).is_file() for link in links)
        assert "secret" not in text
        assert "<span>Video no longer kept</span>" in text  # #4: never kept
        assert "<span>Image no longer kept</span>" in text  # #5: its listed name led out
    # exporting again into the same folder is fine
    assert export_gallery(page, results, out) == index


# -- serving -----------------------------------------------------------------------------------


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[WebServer, Path]]:
    media = MediaStore(tmp_path / "data", public_base_url=None, max_reference_bytes=1 << 20)
    results = media.results_dir
    page = sample_page(results)
    (results / "jobentry09-0.png").write_bytes(b"kept, but in no page")
    (results / "odd-0.html").write_text("<script>alert(1)</script>")
    (results / "pic-0.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "outside.png").write_bytes(b"outside")
    (results / "link-0.png").symlink_to(tmp_path / "outside.png")
    extra = ("odd-0.html", "pic-0.svg", "link-0.png", "../outside.png", "x/../y.png")
    page = dataclasses.replace(page, files={**page.files, 7: extra})
    gallery = KeptGallery(pages_of(page), results, model_name=model_name)
    async with WebServer(host="127.0.0.1", port=0, media=media, gallery=gallery) as server:
        yield server, results


async def test_the_page_and_its_files_are_served(served: tuple[WebServer, Path]) -> None:
    web, results = served
    async with httpx.AsyncClient(base_url=web.base_url) as http:
        answer = await http.get(f"/sessions/{KEY}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-cache"
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        text = answer.text
        assert numbers_in(text) == [6, 5, 4, 3, 2, 1]
        links = re.findall(r'src="([^"]+)"', text)
        assert links == [
            f"{KEY}/files/{job_id(n)}-0.{e}"
            for n, e in ((6, "jpg"), (5, "png"), (3, "png"), (2, "jpg"), (1, "png"))
        ]
        assert "<span>Video no longer kept</span>" in text  # listed, not there
        for link in links:
            got = await http.get(f"/sessions/{link}")  # relative to /sessions/<key>
            assert got.status_code == 200
            assert got.content == (results / link.rsplit("/", 1)[1]).read_bytes()
            assert got.headers["content-type"] == (
                "image/png" if link.endswith(".png") else "image/jpeg"
            )
            assert got.headers["x-content-type-options"] == "nosniff"
            assert got.headers["cache-control"] == "private, max-age=86400"
        top = await http.get(f"/sessions/{KEY}", params={"order": "top"})
        assert numbers_in(top.text) == [2, 1, 6, 3, 4, 5]
        odd = await http.get(f"/sessions/{KEY}", params={"order": "<x>"})
        assert numbers_in(odd.text) == [6, 5, 4, 3, 2, 1]
        # a listed file that is no image or video is never shown as a page of ours
        for name in ("odd-0.html", "pic-0.svg"):
            got = await http.get(f"/sessions/{KEY}/files/{name}")
            assert got.status_code == 200
            assert got.headers["content-type"] == "application/octet-stream"
            assert got.headers["content-disposition"] == "attachment"


async def test_unknown_galleries_and_unlisted_files_are_404(
    served: tuple[WebServer, Path],
) -> None:
    web, _ = served
    bad = [
        "/sessions/nope",
        f"/sessions/{KEY}x",
        f"/sessions/{KEY}%00",
        "/sessions/..%2f..%2fetc%2fpasswd",
        "/sessions/" + "a" * 200,
        f"/sessions/nope/files/{job_id(1)}-0.png",  # a real file, the wrong gallery
        f"/sessions/{KEY}/files/jobentry09-0.png",  # kept, but not in this page
        f"/sessions/{KEY}/files/{job_id(4)}-0.mp4",  # listed, gone
        f"/sessions/{KEY}/files/link-0.png",  # listed, a link out of the folder
        f"/sessions/{KEY}/files/..%2foutside.png",
        f"/sessions/{KEY}/files/..%2f..%2foutside.png",
        f"/sessions/{KEY}/files/%2e%2e",
        f"/sessions/{KEY}/files/x%2f..%2fy.png",
        f"/sessions/{KEY}/files/{job_id(1)}-0.png%00",
        f"/sessions/{KEY}/files/",
    ]
    async with httpx.AsyncClient(base_url=web.base_url) as http:
        for path in bad:
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["x-content-type-options"] == "nosniff", path
        answer = await http.get("/sessions/nope")
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert answer.headers["cache-control"] == "no-store"
        assert "This gallery is not here" in answer.text
        assert "/session gallery" in answer.text


async def test_without_a_gallery_source_the_routes_answer_404(tmp_path: Path) -> None:
    media = MediaStore(tmp_path, public_base_url=None, max_reference_bytes=1 << 20)
    sample_page(media.results_dir)
    async with (
        WebServer(host="127.0.0.1", port=0, media=media) as web,
        httpx.AsyncClient(base_url=web.base_url) as http,
    ):
        assert (await http.get(f"/sessions/{KEY}")).status_code == 404
        assert (await http.get(f"/sessions/{KEY}/files/{job_id(1)}-0.png")).status_code == 404
        assert (await http.get("/healthz")).status_code == 200


# -- kept files --------------------------------------------------------------------------------


def test_result_file_takes_plain_names_of_regular_files_only(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "abc-0.png").write_bytes(b"x")
    (results / "sub").mkdir()
    (tmp_path / "out.png").write_bytes(b"x")
    (results / "ln-0.png").symlink_to(tmp_path / "out.png")
    assert result_file(results, "abc-0.png") == results / "abc-0.png"
    for name in (
        "../out.png",
        "sub",
        "ln-0.png",
        "abc-0.png\n",
        ".abc",
        "a/b.png",
        "",
        "missing.png",
    ):
        assert result_file(results, name) is None, name
    assert result_file(tmp_path / "none", "abc-0.png") is None


def test_prune_deletes_only_the_named_old_files_not_kept(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    now = time.time()
    for name in ("old-0.png", "old-1.png", "kept-0.png", "new-0.png", "other-0.png"):
        (results / name).write_bytes(b"x")
        age = 0 if name.startswith("new") else 40 * 86400
        os.utime(results / name, (now - age, now - age))
    (tmp_path / "outside.png").write_bytes(b"x")
    os.utime(tmp_path / "outside.png", (now - 40 * 86400,) * 2)
    names = ["old-0.png", "old-1.png", "kept-0.png", "new-0.png", "gone-0.png", "../outside.png"]
    deleted = prune_results(results, names, older_than=now - 30 * 86400, keep={"kept-0.png"})
    assert deleted == ["old-0.png", "old-1.png"]
    assert sorted(p.name for p in results.iterdir()) == ["kept-0.png", "new-0.png", "other-0.png"]
    assert (tmp_path / "outside.png").exists()
    assert prune_results(results, names, older_than=now - 30 * 86400) == ["kept-0.png"]


def test_gallery_keep_days_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).gallery_keep_days == 30  # type: ignore[call-arg]
    monkeypatch.setenv("GALLERY_KEEP_DAYS", "7")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.gallery_keep_s == 7 * 86400
    monkeypatch.setenv("GALLERY_KEEP_DAYS", "0")
    with pytest.raises(ValueError):
        Settings(_env_file=None)  # type: ignore[call-arg]
