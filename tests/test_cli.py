"""The CLI contract: verbs, output and exit codes, through the real entry point."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Settings
from bot.messages import UNREADABLE_IMAGE
from sandbox import SandboxGateway
from tests.fakes.aggregator import FakeAggregator
from tests.helpers import PNG_1PX, corrupt_jpeg, png_file
from tests.test_restart import _cli, _env


def test_models_prints_a_readable_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot", "models"], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["model", "kind", "name"]
    for code in ("sora_studio", "veo_reference", "gpt-image-2", "nanobanana_pro"):
        assert any(line.startswith(code) for line in lines), code
    assert "nanobanana_pro also answers to gemini-3-pro-image-preview" in out
    assert "veo_reference also answers to firefly-veo31-ref-*" in out
    assert "$0.65 (reported)" in out


def test_models_json_lists_every_model() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot", "models", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = json.loads(out)
    assert len(rows) == 8
    assert {r["kind"] for r in rows} == {"image", "video"}


async def test_generate_saves_the_file_and_exits_0(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    ref = png_file(tmp_path)
    code, out, err = await _cli(
        env,
        "generate",
        "-m",
        "nanobanana",
        "-p",
        "a fox in snow",
        "-i",
        str(ref),
        "--aspect-ratio",
        "1:1",
        "--quality",
        "4k",
        "-o",
        str(tmp_path / "out"),
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["upstream_task_id"]
    assert result["error"] is None
    saved = Path(result["files"][0])
    assert saved.parent == tmp_path / "out" and saved.read_bytes().startswith(b"\x89PNG")
    assert "Nano Banana" in err  # progress on stderr
    body = sandbox.create_calls()[0].json
    assert body["images"][0].startswith("data:image/png;base64,")


async def test_generate_exit_1_on_failure_with_words(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    code, out, err = await _cli(env, "generate", "-m", "veo_fast", "-p", "a storm [refund]")
    assert code == 1
    assert "was refunded" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["-m", "sora_studio", "-p", "hi"],
            "That prompt is 2 characters; Sora Studio needs at least 3.",
        ),
        (["-m", "nanobanan", "-p", "a fox"], "Did you mean nanobanana"),
        (["-m", "nanobanana", "-p", "a fox", "-i", "missing.png"], "There is no file missing.png."),
    ],
)
async def test_generate_exit_2_on_bad_input_without_upstream_call(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path, args: list[str], words: str
) -> None:
    env = _env(settings, tmp_path)
    code, out, err = await _cli(env, "generate", *args, "--json")
    assert code == 2
    assert words in err
    assert json.loads(out)["status"] == "rejected"
    assert sandbox.requests == []


NOBODY = "http://127.0.0.1:9"  # a PUBLIC_BASE_URL nothing answers at: `generate` serves none


async def test_generate_hands_the_gateway_no_url_of_ours(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path) | {"PUBLIC_BASE_URL": NOBODY}
    ref = png_file(tmp_path)
    code, out, err = await _cli(
        env, "generate", "-m", "nanobanana", "-p", "a fox in snow", "-i", str(ref), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["status"] == "succeeded"
    (create,) = sandbox.create_calls()
    assert create.json["images"] == ["data:image/png;base64," + base64.b64encode(PNG_1PX).decode()]
    assert NOBODY not in json.dumps(create.json)


async def test_generate_on_the_aggregator_polls_without_a_webhook(
    settings: Settings, tmp_path: Path
) -> None:
    async with FakeAggregator(api_key="sk-agg-TESTKEY") as agg:
        env = _env(settings, tmp_path) | {
            "PUBLIC_BASE_URL": NOBODY,
            "AGGREGATOR_BASE_URL": agg.base_url,
            "AGGREGATOR_API_KEY": "sk-agg-TESTKEY",
            "AGGREGATOR_MODELS": "flux",
        }
        code, out, err = await _cli(env, "generate", "-m", "flux", "-p", "a fox", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    (create,) = agg.create_calls()
    assert create.json["query"] == {"async": "true"}  # no webhook URL: polled to its end
    assert agg.polls(result["upstream_task_id"])
    assert agg.webhook_calls == []


async def test_generate_json_is_about_this_request_after_an_earlier_rejection(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    code, out, _ = await _cli(env, "generate", "-m", "sora_studio", "-p", "hi", "--json")
    earlier = json.loads(out)
    assert code == 2 and earlier["status"] == "rejected" and earlier["id"]

    not_a_png = tmp_path / "notes.png"
    not_a_png.write_text("just words")
    for image, words in (
        ("missing.png", "There is no file missing.png."),
        (str(not_a_png), "That file is not an image I can use. Send a JPEG, PNG, WebP or GIF."),
        (f"{sandbox.base_url}/no-such-image.png", "I could not fetch"),
    ):
        code, out, err = await _cli(
            env, "generate", "-m", "nanobanana", "-p", "a fox", "-i", image, "--json"
        )
        assert code == 2
        result = json.loads(out)
        assert result["id"] is None and result["status"] == "rejected", result
        assert result["error"].startswith(words) and words in err
        assert result["model"] == "nanobanana" and result["result_urls"] == []

    code, out, _ = await _cli(env, "generate", "-m", "sora_studio", "-p", "yo", "--json")
    own = json.loads(out)
    assert code == 2 and own["id"] not in (None, earlier["id"])
    assert own["prompt"] == "yo" and own["status"] == "rejected"
    assert sandbox.create_calls() == []


async def test_generate_refuses_a_file_that_does_not_decode(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(corrupt_jpeg())  # JPEG magic bytes, the picture cut off
    env = _env(settings, tmp_path)
    code, out, err = await _cli(
        env, "generate", "-m", "nanobanana", "-p", "a fox", "-i", str(broken), "--json"
    )
    assert code == 2
    assert UNREADABLE_IMAGE in err
    assert json.loads(out)["status"] == "rejected"
    assert sandbox.requests == []


async def test_generate_exit_2_without_a_key(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings, tmp_path)
    env.pop("AA_API_KEY")
    code, out, err = await _cli(env, "generate", "-m", "veo", "-p", "a fox")
    assert code == 2
    assert "AA_API_KEY is not set" in err


async def test_jobs_lists_newest_first(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    await _cli(env, "generate", "-m", "nanobanana", "-p", "first")
    await _cli(env, "generate", "-m", "gpt-image-2", "-p", "second")
    code, out, _ = await _cli(env, "jobs", "--json", "--limit", "5")
    jobs = json.loads(out)
    assert [j["prompt"] for j in jobs] == ["second", "first"]
    assert all(j["delivery"] == "delivered" for j in jobs)
    code, out, _ = await _cli(env, "jobs")
    assert out.splitlines()[0].split()[:2] == ["id", "created"]


async def test_demo_runs_with_no_keys(tmp_path: Path) -> None:
    code, out, err = await _cli(
        {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **_pythonpath()},
        "demo",
        "--speed",
        "0.3",
        "-o",
        str(tmp_path / "demo"),
        timeout=60,
    )
    assert code == 0, err
    assert "the gateway saw 2 create calls" in out
    assert sorted(p.suffix for p in (tmp_path / "demo").iterdir()) == [".mp4", ".png"]


def _pythonpath() -> dict[str, str]:
    import os

    return {
        k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "VIRTUAL_ENV", "PTB_TIMEDELTA")
    }


async def test_migrate_prints_the_schema_version(settings: Settings, tmp_path: Path) -> None:
    from storage.migrations import MIGRATIONS

    code, out, err = await _cli(_env(settings, tmp_path), "migrate")
    assert code == 0, err
    assert out == f"SQLite {tmp_path / 'genrelay.db'}: schema version {len(MIGRATIONS)}\n"
