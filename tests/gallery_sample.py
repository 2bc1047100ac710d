"""A creative session's gallery page as tests see it: six entries with real image files
(drawn with Pillow), a remix, a video whose file is gone, and a prompt that tries HTML."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path

from PIL import Image, ImageDraw

from bot.models import Job, JobState, Kind, Origin
from bot.sessions import Entry, GalleryPage, Session, SessionFigures

STARTED = 1_778_000_000.0  # a Tuesday afternoon, UTC
KEY = "g4Lx_Q2p9vYc7TnZ0aWk-3rE"
HOSTILE = '<script>window.pwned = 1</script> a lighthouse of <b>glass</b> & "quotes"'

# number, author, prompt, model, votes, remix of, kind, file ending (None: no file kept)
ENTRIES: tuple[tuple[int, str, str, str, int, int | None, Kind, str | None], ...] = (
    (1, "Ann", "A red-striped lighthouse on black cliffs at first light, watercolor",
     "nanobanana", 4, None, Kind.IMAGE, ".png"),
    (2, "Bob", "The same lighthouse, but the sea is folded paper",
     "nanobanana_pro", 6, 1, Kind.IMAGE, ".jpg"),
    (3, "Chidi", "The keeper's cat watching the fog roll in, oil painting",
     "gpt_image_2", 2, None, Kind.IMAGE, ".png"),
    (4, "Dana", "Slow dolly over the waves towards the lighthouse at dawn",
     "veo_fast", 1, None, Kind.VIDEO, None),
    (5, "Eve", HOSTILE, "nanobanana", 0, None, Kind.IMAGE, ".png"),
    (6, "Farid", "The beam sweeping across a starry sky, long exposure photograph",
     "nanobanana", 3, 3, Kind.IMAGE, ".jpg"),
)  # fmt: skip

_PALETTES = (
    ((252, 186, 120), (120, 86, 160), (40, 36, 64), (196, 60, 48)),
    ((250, 220, 200), (90, 150, 200), (30, 60, 90), (236, 236, 228)),
    ((210, 210, 200), (150, 160, 170), (70, 70, 80), (230, 150, 60)),
    ((255, 200, 150), (230, 120, 110), (60, 40, 70), (250, 240, 220)),
    ((180, 230, 240), (60, 140, 190), (20, 60, 100), (250, 250, 255)),
    ((40, 40, 90), (12, 14, 40), (10, 10, 20), (255, 240, 180)),
)


def picture(n: int, size: tuple[int, int] = (480, 480)) -> Image.Image:
    """A small landscape: a sky gradient, a sun or moon, hills, and a lighthouse."""
    top, bottom, land, light = _PALETTES[(n - 1) % len(_PALETTES)]
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(h):
        t = y / (h - 1)
        draw.line(
            [(0, y), (w, y)],
            fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    cx = w * (0.25 + 0.1 * (n % 4))
    draw.ellipse([cx - 40, h * 0.22, cx + 40, h * 0.22 + 80], fill=light)
    draw.polygon(
        [(0, h), (0, h * 0.7), (w * 0.35, h * 0.62), (w * 0.7, h * 0.74), (w, h * 0.66), (w, h)],
        fill=land,
    )
    x = w * 0.68
    draw.polygon(
        [(x - 22, h * 0.72), (x - 12, h * 0.4), (x + 12, h * 0.4), (x + 22, h * 0.72)],
        fill=(236, 232, 224),
    )
    for stripe in (0.47, 0.57, 0.66):
        draw.rectangle([x - 20, h * stripe, x + 20, h * stripe + 14], fill=(190, 50, 44))
    draw.rectangle([x - 14, h * 0.35, x + 14, h * 0.4], fill=light)
    draw.polygon([(x + 14, h * 0.37), (w, h * 0.28), (w, h * 0.44)], fill=(*light,))
    return image


def image_bytes(n: int, ending: str) -> bytes:
    out = io.BytesIO()
    if ending == ".png":
        picture(n).save(out, "PNG", optimize=True)
    else:
        picture(n).save(out, "JPEG", quality=85)
    return out.getvalue()


def job_id(n: int) -> str:
    return f"jobentry{n:02d}"


def sample_page(results_dir: Path | None = None, *, ended: bool = True) -> GalleryPage:
    """The page; with `results_dir`, the image files it lists are written there."""
    session = Session(
        id="k3f9",
        gallery_key=KEY,
        platform="telegram",
        chat_id="-1001234",
        thread_id=None,
        scope_id="-1001234",
        theme="Lighthouses at dawn",
        started_by="100",
        started_by_name="Ann",
        started_at=STARTED,
        ends_at=STARTED + 1800,
        budget_usd=5.0,
        per_person=3,
        video=True,
        ended_at=STARTED + 1800 if ended else None,
    )
    entries = []
    files: dict[int, tuple[str, ...]] = {}
    names = {number: author for number, author, *_ in ENTRIES}
    for number, author, prompt, model, votes, remix_of, kind, ending in ENTRIES:
        job = Job(
            id=job_id(number),
            kind=kind,
            model=model,
            prompt=prompt,
            origin=Origin(platform="telegram", chat_id="-1001234", user_id=author.lower()),
            state=JobState.SUCCEEDED,
            created_at=STARTED + 60 * number,
        )
        entries.append(
            Entry(
                number=number,
                job=job,
                author_id=author.lower(),
                author_name=author,
                votes=votes,
                remix_of=remix_of,
                remix_of_author=names[remix_of] if remix_of else None,
            )
        )
        name = f"{job.id}-0{ending or '.mp4'}"
        files[number] = (name,)  # the video's is listed, but not there
        if results_dir is not None and ending is not None:
            results_dir.mkdir(parents=True, exist_ok=True)
            (results_dir / name).write_bytes(image_bytes(number, ending))
    figures = SessionFigures(
        session=session, entries=len(entries), people=6, spent_usd=1.85, votes=16
    )
    return GalleryPage(figures=figures, entries=tuple(reversed(entries)), files=files)


MODEL_NAMES = {
    "nanobanana": "Nano Banana",
    "nanobanana_pro": "Nano Banana Pro",
    "gpt_image_2": "GPT Image 2",
    "veo_fast": "Veo 3.1 Fast",
}


def model_name(code: str) -> str:
    return MODEL_NAMES.get(code, code)


def pages_of(page: GalleryPage) -> Callable[[str], Awaitable[GalleryPage | None]]:
    """A page lookup by gallery key that knows this one page."""

    async def lookup(key: str) -> GalleryPage | None:
        return page if key == page.figures.session.gallery_key else None

    return lookup
