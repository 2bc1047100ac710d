"""The gallery of a creative session: one self-contained HTML page (inline CSS, no script),
served by bot/web.py at /sessions/<gallery key> and written to disk by `export_gallery`.

Every string a person typed (theme, prompts, names) is escaped here, in one place: `_e`.
"""

from __future__ import annotations

import dataclasses
import html
import mimetypes
import shutil
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import quote

from bot.media import result_file
from bot.models import ACTIVE_STATES, JobState, Kind
from bot.sessions import Entry, GalleryPage

__all__ = [
    "EXPORT_PAGES",
    "GallerySource",
    "KeptGallery",
    "Order",
    "export_gallery",
    "listed_files",
    "not_found_page",
    "ordered",
    "render_page",
    "with_files",
]

Order = Literal["new", "top"]
# What `export_gallery` writes: one page per order, linking to each other.
EXPORT_PAGES: dict[Order, str] = {"new": "index.html", "top": "top.html"}
EXPORT_FILES = "files"  # the folder of copies beside them


class GallerySource(Protocol):
    """What the HTTP server needs to serve galleries (bot/web.py)."""

    async def page(self, key: str) -> GalleryPage | None:
        """The page of the session with this gallery key; None when there is none."""
        ...

    def file_path(self, key: str, name: str) -> Path | None:
        """The kept file behind /sessions/<key>/files/<name>: only a name the page lists
        (the server asks for no other) that is a plain file under the results folder;
        None for anything else (gone, a path, a link out)."""
        ...

    def model_name(self, code: str) -> str:
        """A model's display name ("Nano Banana") for its code."""
        ...


class KeptGallery:
    """A GallerySource on a page lookup (the session use cases' `gallery_page`) and the
    folder result files are kept in (MediaStore.results_dir)."""

    def __init__(
        self,
        pages: Callable[[str], Awaitable[GalleryPage | None]],
        results_dir: Path,
        *,
        model_name: Callable[[str], str] = str,
    ) -> None:
        self._pages = pages
        self.results_dir = results_dir
        self._model_name = model_name

    async def page(self, key: str) -> GalleryPage | None:
        return await self._pages(key)

    def file_path(self, key: str, name: str) -> Path | None:
        return result_file(self.results_dir, name)

    def model_name(self, code: str) -> str:
        return self._model_name(code)


# -- the page ----------------------------------------------------------------------------------


def _e(text: object) -> str:
    """Escaped for HTML text and attribute values (quotes too)."""
    return html.escape(str(text), quote=True)


def listed_files(page: GalleryPage) -> set[str]:
    return {name for names in page.files.values() for name in names}


def with_files(page: GalleryPage, present: Callable[[str], bool]) -> GalleryPage:
    """The page listing only the files for which `present` holds (the others show a
    placeholder)."""
    files = {n: kept for n, names in page.files.items() if (kept := tuple(filter(present, names)))}
    return dataclasses.replace(page, files=files)


def ordered(entries: Iterable[Entry], order: Order) -> list[Entry]:
    """Newest first, or top first (most votes; the earliest first among equals)."""
    if order == "top":
        return sorted(entries, key=lambda e: (-e.votes, e.number))
    return sorted(entries, key=lambda e: -e.number)


def _date(ts: float) -> str:
    d = datetime.fromtimestamp(ts, UTC)
    return f"{d.day} {d:%b %Y}, {d:%H:%M} UTC"


def _later(ts: float, since: float) -> str:
    """A second moment: the time only when it is on the same day as `since`."""
    d, s = datetime.fromtimestamp(ts, UTC), datetime.fromtimestamp(since, UTC)
    return f"{d:%H:%M} UTC" if d.date() == s.date() else _date(ts)


def _count(n: int, one: str, many: str) -> str:
    return f"<b>{n}</b> {one if n == 1 else many}"


def _is_video(name: str, kind: Kind) -> bool:
    mime = mimetypes.guess_type(name)[0] or ""
    if mime.startswith(("video/", "image/")):
        return mime.startswith("video/")
    return kind is Kind.VIDEO


def _placeholder(entry: Entry) -> str:
    what = "Video" if entry.kind is Kind.VIDEO else "Image"
    state = entry.job.state
    if state is JobState.SUCCEEDED:
        text = f"{what} no longer kept"
    elif state in ACTIVE_STATES or not entry.job.terminal:
        text = "Still being made…"
    else:
        text = f"No {what.lower()}: it did not work out"
    return f'<div class="placeholder" role="img" aria-label="{_e(text)}"><span>{text}</span></div>'


def _media(entry: Entry, names: tuple[str, ...], file_url: Callable[[str], str]) -> str:
    if not names:
        return f'<div class="media">{_placeholder(entry)}</div>'
    alt = f"#{entry.number}: {entry.job.prompt[:120]}"
    items = []
    for name in names:
        url = _e(file_url(name))
        if _is_video(name, entry.kind):
            items.append(f'<video controls preload="metadata" playsinline src="{url}"></video>')
        else:
            items.append(f'<a href="{url}"><img loading="lazy" src="{url}" alt="{_e(alt)}"></a>')
    many = " many" if len(items) > 1 else ""
    return f'<div class="media{many}">{"".join(items)}</div>'


def _entry(
    entry: Entry,
    names: tuple[str, ...],
    file_url: Callable[[str], str],
    model_name: Callable[[str], str],
) -> str:
    author = entry.author_name or "someone"
    votes = f"{entry.votes} {'vote' if entry.votes == 1 else 'votes'}"
    details = [f'<span class="model">{_e(model_name(entry.job.model))}</span>']
    if entry.remix_of is not None:
        by = f" by {_e(entry.remix_of_author)}" if entry.remix_of_author else ""
        details.append(
            f'<span class="remix">remix of <a href="#e{entry.remix_of}">'
            f"#{entry.remix_of}{by}</a></span>"
        )
    return (
        f'<article class="entry" id="e{entry.number}">'
        f"{_media(entry, names, file_url)}"
        '<div class="meta">'
        f'<p class="head"><span class="num">#{entry.number}</span> '
        f'<span class="author">{_e(author)}</span>'
        f'<span class="votes" title="{votes}" aria-label="{votes}">♥ {entry.votes}</span></p>'
        f'<p class="prompt">{_e(entry.job.prompt)}</p>'
        f'<p class="details">{" · ".join(details)}</p>'
        "</div></article>"
    )


_ORDERS: tuple[tuple[Order, str], ...] = (("new", "Newest first"), ("top", "Top first"))


def _order_links(order: Order, order_url: Callable[[Order], str]) -> str:
    links = []
    for value, label in _ORDERS:
        current = ' aria-current="page"' if value == order else ""
        links.append(f'<a href="{_e(order_url(value))}"{current}>{label}</a>')
    return f'<nav class="order" aria-label="Order">{"".join(links)}</nav>'


def render_page(
    page: GalleryPage,
    *,
    file_url: Callable[[str], str],
    order: Order = "new",
    model_name: Callable[[str], str] = str,
    order_url: Callable[[Order], str] | None = None,
) -> str:
    """The whole gallery page. `file_url` gives the link of a kept file by name (served or
    exported); `order_url` the link of the page in an order (default `?order=new|top`);
    `model_name` a model's display name for its code. Entries without a listed file show a
    placeholder."""
    figures = page.figures
    session = figures.session
    when = f"Started {_date(session.started_at)}"
    if session.ended_at is not None:
        when += f" · ended {_later(session.ended_at, session.started_at)}"
    else:
        when += f" · open until {_later(session.ends_at, session.started_at)}"
    stats = "".join(
        f"<li>{item}</li>"
        for item in (
            _count(figures.entries, "entry", "entries"),
            _count(figures.people, "person", "people"),
            f"<b>${figures.spent_usd:.2f}</b> spent",
            _count(figures.votes, "vote", "votes"),
        )
    )
    entries = ordered(page.entries, order)
    cards = "".join(_entry(e, page.files.get(e.number, ()), file_url, model_name) for e in entries)
    if not cards:
        cards = '<p class="empty">No entries yet.</p>'
    links = _order_links(order, order_url or (lambda o: f"?order={o}"))
    title = _e(session.theme)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        '<meta name="referrer" content="no-referrer">'
        '<link rel="icon" href="data:,">'  # no request for /favicon.ico
        f"<title>{title} · genrelay session</title><style>{_CSS}</style></head>"
        "<body><header>"
        '<p class="kicker">genrelay · creative session</p>'
        f"<h1>{title}</h1>"
        f'<p class="when">{when}</p>'
        f'<ul class="figures">{stats}</ul>{links}'
        f'</header><main class="grid">{cards}</main>'
        "<footer>Made together with <b>genrelay</b>.</footer>"
        "</body></html>\n"
    )


def not_found_page() -> str:
    """What an unknown, mistyped or removed gallery link shows."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>Gallery not found · genrelay</title><style>{_CSS}</style></head>"
        '<body><header><p class="kicker">genrelay</p><h1>This gallery is not here</h1>'
        '<p class="when">The link may be cut short or mistyped. Ask in the chat for the '
        "link again: <code>/session gallery</code>.</p></header></body></html>\n"
    )


# -- export ------------------------------------------------------------------------------------


def export_gallery(
    page: GalleryPage,
    files_dir: Path,
    out: Path,
    *,
    model_name: Callable[[str], str] = str,
) -> Path:
    """Write the gallery as static files that open from disk: `out/index.html` (newest
    first), `out/top.html` (top first) and copies of the kept files in `out/files/`, linked
    relatively. `files_dir`: where the files are kept (MediaStore.results_dir); a listed
    file that is not there shows a placeholder. Returns the path of index.html."""
    target = out / EXPORT_FILES
    target.mkdir(parents=True, exist_ok=True)
    copied: set[str] = set()
    for name in sorted(listed_files(page)):
        source = result_file(files_dir, name)
        if source is not None:
            shutil.copyfile(source, target / name)
            copied.add(name)
    shown = with_files(page, copied.__contains__)
    for order, filename in EXPORT_PAGES.items():
        text = render_page(
            shown,
            file_url=lambda name: f"{EXPORT_FILES}/{quote(name)}",
            order=order,
            model_name=model_name,
            order_url=EXPORT_PAGES.__getitem__,
        )
        (out / filename).write_text(text, encoding="utf-8")
    return out / EXPORT_PAGES["new"]


# -- style -------------------------------------------------------------------------------------

_CSS = """
:root{--bg:#f6f4ef;--card:#fff;--fg:#1d1b18;--muted:#6c665d;--line:#e5e0d6;--accent:#c4502a;
--ph:#ece7dd;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#111113;--card:#1c1c1f;--fg:#eeeae3;
--muted:#a29c92;--line:#2d2d31;--accent:#ff8f63;--ph:#26262a}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header,main,footer{max-width:1200px;margin:0 auto;padding:0 16px}
header{padding-top:28px;padding-bottom:8px}
.kicker{margin:0;color:var(--accent);font-size:.8rem;font-weight:600;letter-spacing:.08em;
text-transform:uppercase}
h1{margin:.2em 0 .1em;font-size:clamp(1.6rem,5vw,2.6rem);line-height:1.15;
overflow-wrap:anywhere}
.when{margin:0 0 12px;color:var(--muted)}
.figures{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 16px;padding:0;list-style:none}
.figures li{background:var(--card);border:1px solid var(--line);border-radius:999px;
padding:4px 12px;font-size:.9rem}
.order{display:flex;gap:6px;margin-bottom:16px}
.order a{color:var(--fg);text-decoration:none;padding:6px 14px;border-radius:999px;
border:1px solid var(--line);font-size:.9rem}
.order a[aria-current]{background:var(--fg);color:var(--bg);border-color:var(--fg)}
.grid{display:grid;gap:16px;grid-template-columns:repeat(auto-fill,minmax(min(100%,280px),1fr));
padding-bottom:24px}
.entry{background:var(--card);border:1px solid var(--line);border-radius:14px;overflow:hidden;
display:flex;flex-direction:column;scroll-margin-top:12px}
.entry:target{outline:3px solid var(--accent)}
.media{background:var(--ph)}
.media.many{display:grid;grid-template-columns:1fr 1fr;gap:2px}
.media a{display:block}
.media img,.media video{display:block;width:100%;height:auto;max-height:70vh;object-fit:contain;
background:var(--ph)}
.placeholder{aspect-ratio:1;display:flex;align-items:center;justify-content:center;
color:var(--muted);font-size:.95rem;text-align:center;padding:16px;
background:repeating-linear-gradient(135deg,var(--ph) 0 14px,var(--line) 14px 28px)}
.placeholder span{background:var(--card);padding:6px 12px;border-radius:999px}
.meta{padding:12px 14px 14px}
.meta p{margin:0}
.head{display:flex;align-items:baseline;gap:8px}
.num{font-weight:700;color:var(--accent)}
.author{font-weight:600;overflow-wrap:anywhere}
.votes{margin-left:auto;white-space:nowrap;font-weight:600}
.prompt{margin:6px 0 8px!important;overflow-wrap:anywhere;white-space:pre-wrap}
.details{color:var(--muted);font-size:.85rem}
.details a{color:inherit}
.empty{color:var(--muted)}
footer{color:var(--muted);font-size:.85rem;padding-bottom:32px}
code{font-size:.95em}
"""
