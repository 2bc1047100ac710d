"""A session's gallery in a real browser: the real HTTP server on loopback serves the page
and its real image files, headless Chromium (Debian's, driven by Playwright) opens it at a
desktop and a phone width, and every image must load, every text be there, and a prompt
that tries HTML show as text. Screenshots go to test-artifacts/.

Chromium is not optional: without it this test fails and says how to install it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.gallery import KeptGallery
from bot.media import MediaStore
from bot.web import WebServer
from tests.gallery_sample import ENTRIES, HOSTILE, KEY, model_name, pages_of, sample_page

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
INSTALL = (
    "Chromium is needed for the gallery's browser test and is not installed: "
    "`apt-get install -y chromium` (Debian's package; the README's test command and "
    ".ci/run install it when it is missing)."
)

ALL_IMAGES_LOADED = """() => {
    const images = [...document.images];
    return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0);
}"""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(INSTALL, pytrace=False)
    return path


@pytest.fixture
async def gallery_url(tmp_path: Path) -> AsyncIterator[str]:
    media = MediaStore(tmp_path / "data", public_base_url=None, max_reference_bytes=1 << 20)
    page = sample_page(media.results_dir)
    gallery = KeptGallery(pages_of(page), media.results_dir, model_name=model_name)
    async with WebServer(host="127.0.0.1", port=0, media=media, gallery=gallery) as web:
        yield f"{web.base_url}/sessions/{KEY}"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable)
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_page(browser: Any, url: str, *, viewport: dict[str, int], scheme: str) -> Any:
    context = await browser.new_context(viewport=viewport, color_scheme=scheme)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    page.problems = problems
    response = await page.goto(url)
    assert response is not None and response.status == 200
    return page


async def load_every_image(page: Any) -> list[int]:
    """Scroll each (lazy) image into view, wait until all have loaded; their widths."""
    for image in await page.locator("img").all():
        await image.scroll_into_view_if_needed()
    await page.wait_for_function(ALL_IMAGES_LOADED, timeout=15_000)
    widths: list[int] = await page.evaluate("() => [...document.images].map(i => i.naturalWidth)")
    await page.evaluate("() => window.scrollTo(0, 0)")
    return widths


async def test_the_gallery_loads_in_chromium(browser: Any, gallery_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = await open_page(browser, gallery_url, viewport=DESKTOP, scheme="light")

    kept = [n for n, *_, ending in ENTRIES if ending is not None]
    assert await load_every_image(page) == [480] * len(kept)
    assert await page.locator("h1").inner_text() == "Lighthouses at dawn"
    assert await page.locator(".figures").inner_text() == (
        "6 entries\n6 people\n$1.85 spent\n16 votes"
    )
    assert await page.locator("article").evaluate_all("a => a.map(e => e.id)") == [
        f"e{n}" for n in (6, 5, 4, 3, 2, 1)
    ]
    for number, author, prompt, *_ in ENTRIES:
        card = page.locator(f"#e{number}")
        assert await card.locator(".num").inner_text() == f"#{number}"
        assert await card.locator(".author").inner_text() == author
        assert await card.locator(".prompt").inner_text() == prompt
    assert await page.locator("#e2 .details").inner_text() == "Nano Banana Pro · remix of #1 by Ann"
    assert await page.locator("#e2 .votes").inner_text() == "♥ 6"
    assert await page.locator("#e4 .placeholder").inner_text() == "Video no longer kept"

    # The prompt that tries HTML is text: no element, no script ran.
    assert await page.locator("#e5 .prompt").inner_text() == HOSTILE
    assert await page.locator("#e5 .prompt *").count() == 0
    assert await page.evaluate("() => window.pwned") is None

    await page.screenshot(path=ARTIFACTS / "gallery.png", full_page=True)
    desktop = await page.screenshot(path=ARTIFACTS / "gallery-desktop.png")
    assert desktop

    # Top first: one link, no script.
    await page.get_by_role("link", name="Top first").click()
    await page.wait_for_url("**?order=top")
    assert await page.locator("article").evaluate_all("a => a.map(e => e.id)") == [
        f"e{n}" for n in (2, 1, 6, 3, 4, 5)
    ]
    await load_every_image(page)
    await page.screenshot(path=ARTIFACTS / "gallery-top.png")
    # A remix links to the entry it remixes.
    await page.locator("#e2 .remix a").click()
    await page.wait_for_url("**#e1")
    assert page.problems == []

    # On a phone, in the dark: one column, nothing wider than the screen.
    phone = await open_page(browser, gallery_url, viewport=PHONE, scheme="dark")
    assert await load_every_image(phone) == [480] * len(kept)
    widths = await phone.locator("article").evaluate_all(
        "a => a.map(e => e.getBoundingClientRect().width)"
    )
    assert all(330 < w <= 390 for w in widths), widths
    assert await phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    background = await phone.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 17, 19)"  # the dark scheme's
    await phone.screenshot(path=ARTIFACTS / "gallery-phone.png", full_page=True)
    await phone.screenshot(path=ARTIFACTS / "gallery-phone-top.png")
    assert phone.problems == []

    side_by_side(
        ARTIFACTS / "gallery-top.png",
        ARTIFACTS / "gallery-phone-top.png",
        ARTIFACTS / "gallery-readme.png",
    )


def side_by_side(desktop: Path, phone: Path, out: Path) -> None:
    """The README's picture (docs/gallery.png is a copy): the desktop view, light, and the
    phone view, dark, side by side, at three quarters of their size (about 200 KB)."""
    gap = 24
    with Image.open(desktop) as wide, Image.open(phone) as narrow:
        height = max(wide.height, narrow.height)
        canvas = Image.new("RGB", (wide.width + gap + narrow.width, height), (222, 218, 210))
        canvas.paste(wide.convert("RGB"), (0, (height - wide.height) // 2))
        canvas.paste(narrow.convert("RGB"), (wide.width + gap, (height - narrow.height) // 2))
    canvas = canvas.resize((canvas.width * 3 // 4, canvas.height * 3 // 4), Image.LANCZOS)
    canvas.save(out, optimize=True)


def test_ci_runs_the_readmes_command_which_installs_chromium() -> None:
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```sh\n{command}\n```" in (ROOT / "README.md").read_text()
    assert command.startswith("command -v chromium >/dev/null || (apt-get update")
    assert "apt-get install -y -qq chromium" in command and command.endswith("&& pytest")
