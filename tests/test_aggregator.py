"""Gateway B, the OpenAI-compatible aggregator, end to end on loopback: the catalog side by
side with AA, the documented request shape, every result shape we accept, the ones we
refuse (clearly, at once), and its key kept to its one header."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from bot.app import Core
from bot.config import Settings
from bot.gateway.aggregator import UNDERSTOOD, parse_task
from bot.main.wiring import build_catalog, open_core
from bot.models import Delivery, JobState, Kind
from sandbox import SandboxGateway
from tests.conftest import API_KEY, running
from tests.fakes.aggregator import FakeAggregator
from tests.helpers import PNG_1PX, RecordingSink, request, wait_delivered
from tests.test_restart import _cli, _env

AGG_KEY = "sk-agg-TESTKEY-9f8e7d6c5b4a3210"
MODELS = "nano-banana-2,flux,qwen-image,gpt-image-2"


@pytest.fixture
async def agg() -> AsyncIterator[FakeAggregator]:
    async with FakeAggregator(api_key=AGG_KEY) as fake:
        yield fake


@pytest.fixture
def agg_settings(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway, agg: FakeAggregator
) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "aa_base_url": sandbox.base_url,
            "aggregator_base_url": agg.base_url,
            "aggregator_api_key": SecretStr(AGG_KEY),
            "aggregator_models": MODELS,
        }
        values.update(overrides)
        return make_settings(**values)

    return build


@pytest.fixture
async def core(agg_settings: Callable[..., Settings]) -> AsyncIterator[Core]:
    async with open_core(agg_settings()) as c, running(c):
        yield c


@pytest.fixture
def sink(core: Core) -> RecordingSink:
    s = RecordingSink()
    core.notifier.register(s)
    return s


# -- the catalog ---------------------------------------------------------------------------------


def test_both_gateways_share_the_catalog_and_a_clash_gets_the_prefix(
    agg_settings: Callable[..., Settings],
) -> None:
    catalog = build_catalog(agg_settings())
    codes = [s.code for s in catalog.all()]
    assert codes[:8] == [
        "sora_studio",
        "sora_fast",
        "veo",
        "veo_fast",
        "veo_reference",
        "gpt-image-2",
        "nanobanana",
        "nanobanana_pro",
    ]
    assert codes[8:] == ["nano-banana-2", "flux", "qwen-image", "agg:gpt-image-2"]
    assert catalog.get("gpt-image-2").provider == "aa"  # the AA name keeps its meaning
    clash = catalog.get("agg:gpt-image-2")
    assert (clash.provider, clash.name) == ("aggregator", "GPT Image 2 (aggregator)")
    flux = catalog.get("flux")
    assert flux.provider == "aggregator" and flux.kind is Kind.IMAGE
    assert catalog.get("AGG:Flux") is flux  # the prefix always works, in any case
    assert catalog.get("nano-banana-2").name == "Nano Banana 2"
    assert flux.aspect_ratios == ("1:1", "16:9", "9:16") and flux.max_images == 0


def test_names_prices_and_kinds_can_be_overridden(
    agg_settings: Callable[..., Settings],
) -> None:
    catalog = build_catalog(
        agg_settings(
            aggregator_models="flux, qwen-image,sora2",
            aggregator_prices="flux=0.03,agg:qwen-image=0.02",
            aggregator_names="flux=Flux Pro",
            aggregator_kinds="sora2=video",
            model_prices="sora2=0.3",
        )
    )
    assert (catalog.get("flux").name, catalog.get("flux").price_usd) == ("Flux Pro", 0.03)
    assert catalog.get("qwen-image").price_usd == 0.02
    sora2 = catalog.get("sora2")
    assert (sora2.kind, sora2.price_usd, sora2.deadline_s) == (Kind.VIDEO, 0.3, 1800)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"aggregator_base_url": None}, "AGGREGATOR_BASE_URL is not"),
        ({"aggregator_kinds": "flux=music"}, "must be image or video"),
        ({"aggregator_prices": "flux=cheap"}, "needs a number"),
        ({"aggregator_names": "flux"}, "expected name=value"),
    ],
)
def test_bad_aggregator_settings_are_refused_at_start(
    agg_settings: Callable[..., Settings], overrides: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        agg_settings(**overrides)


def test_the_key_is_a_secret_for_the_log_filter(agg_settings: Callable[..., Settings]) -> None:
    settings = agg_settings()
    assert AGG_KEY in settings.secrets()
    assert AGG_KEY not in repr(settings)


def test_genrelay_models_lists_both_gateways(agg: FakeAggregator, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {
        **os.environ,
        "AGGREGATOR_BASE_URL": agg.base_url,
        "AGGREGATOR_MODELS": MODELS,
    }
    out = subprocess.run(
        [sys.executable, "-m", "bot", "models"], env=env, capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    for code in ("nanobanana", "gpt-image-2", "nano-banana-2", "flux", "agg:gpt-image-2"):
        assert any(line.startswith(code + " ") for line in lines), code
    assert "flux also answers to agg:flux" in out
    rows = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bot", "models", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert {r["code"]: r["provider"] for r in rows}["agg:gpt-image-2"] == "aggregator"


# -- submit, poll, deliver -----------------------------------------------------------------------


async def test_image_job_is_submitted_polled_and_delivered(
    core: Core, agg: FakeAggregator, sandbox: SandboxGateway, sink: RecordingSink
) -> None:
    job = await core.service.submit(
        request("a lighthouse at dawn", model="flux", aspect_ratio="16:9")
    )
    done = await wait_delivered(core, job.id)

    assert done.state is JobState.SUCCEEDED and done.delivery is Delivery.DELIVERED
    (create,) = agg.create_calls()
    assert create.path == "/v1/images/generations"
    assert create.headers["Authorization"] == AGG_KEY  # exactly as documented: no Bearer
    assert create.headers["ModelName"] == "flux"
    assert create.json == {
        "query": {"async": "true"},  # no webhook without PUBLIC_BASE_URL
        "body": {"size": "1792x1024", "prompt": "a lighthouse at dawn", "model": "flux", "n": 1},
    }
    task_id = done.upstream_task_id
    assert task_id in agg.tasks
    polls = agg.polls(task_id)
    assert polls and all(p.path == f"/v1/images/tasks/{task_id}" for p in polls)
    assert all(p.headers["ModelName"] == "flux" for p in polls)
    ((delivered, files),) = sink.delivered
    assert files[0].path is not None and files[0].path.read_bytes() == PNG_1PX
    assert done.price_usd == pytest.approx(0.04)
    assert sandbox.requests == []  # nothing went to the AA gateway


async def test_a_clashing_name_reaches_the_right_gateway(
    core: Core, agg: FakeAggregator, sandbox: SandboxGateway, sink: RecordingSink
) -> None:
    ours = await core.service.submit(request(model="agg:gpt-image-2"))
    theirs = await core.service.submit(request(model="gpt-image-2"))
    ours_done = await wait_delivered(core, ours.id)
    theirs_done = await wait_delivered(core, theirs.id)
    assert ours_done.state is theirs_done.state is JobState.SUCCEEDED
    assert [c.json["body"]["model"] for c in agg.create_calls()] == ["gpt-image-2"]
    assert agg.create_calls()[0].headers["ModelName"] == "gpt-image-2"
    assert len(sandbox.create_calls()) == 1
    assert sandbox.create_calls()[0].json["model"] == "gpt-image-2"


async def test_the_submit_path_is_configurable(
    agg_settings: Callable[..., Settings], agg: FakeAggregator
) -> None:
    settings = agg_settings(aggregator_submit_path="/v1/images/edits")
    async with open_core(settings) as core, running(core):
        core.notifier.register(RecordingSink())
        job = await core.service.submit(request(model="qwen-image"))
        done = await wait_delivered(core, job.id)
    assert done.state is JobState.SUCCEEDED
    assert [c.path for c in agg.create_calls()] == ["/v1/images/edits"]
    assert agg.create_calls()[0].json["body"]["size"] == "1024x1024"  # the default 1:1


# -- result shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        "data_url",
        "url",
        "image_url",
        "nested_data",
        "nested_result",
        "result_data",
        "b64_json",
        "no_status",
        "b64_no_status",
    ],
)
async def test_each_common_result_shape_is_accepted(
    core: Core, agg: FakeAggregator, sink: RecordingSink, shape: str
) -> None:
    agg.script_next(shape=shape, duration=0.1)
    job = await core.service.submit(request(model="nano-banana-2"))
    done = await wait_delivered(core, job.id)

    assert done.state is JobState.SUCCEEDED, (done.error_code, done.error_message)
    assert len(done.result_urls) == 1
    ((_, files),) = sink.delivered
    assert files[0].path is not None and files[0].path.read_bytes() == PNG_1PX
    if shape.startswith("b64"):
        # Kept as a file of ours, delivered from disk, never stored as base64 in the row.
        assert done.result_urls[0].startswith("file://")
        assert files[0].path == core.media.local_result(done.id, 0)
        assert files[0].path.suffix == ".png"
    else:
        assert done.result_urls[0].startswith(agg.base_url + "/files/")


@pytest.mark.parametrize("shape", ["unknown_field", "nonsense", "bad_b64"])
async def test_a_shape_we_do_not_understand_fails_clearly_at_once(
    core: Core,
    agg: FakeAggregator,
    sink: RecordingSink,
    shape: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    agg.script_next(shape=shape, duration=0.05)
    job = await core.service.submit(request(model="flux"))
    done = await wait_delivered(core, job.id)

    assert done.state is JobState.FAILED
    assert done.error_code == "bad_response"
    assert done.error_message == UNDERSTOOD
    assert UNDERSTOOD in caplog.text  # the operator sees which fields came back
    # Refused on the first finished answer, not by waiting out the deadline.
    task = agg.tasks[done.upstream_task_id or ""]
    assert task.finished_at is not None
    assert len([t for t in task.polls if t >= task.finished_at]) == 1


async def test_an_upstream_failure_is_reported_with_its_words(
    core: Core, agg: FakeAggregator, sink: RecordingSink
) -> None:
    agg.script_next(outcome="failed", duration=0.05)
    job = await core.service.submit(request(model="flux"))
    done = await wait_delivered(core, job.id)
    assert done.state is JobState.FAILED
    assert done.error_message == "blocked by the safety filter"
    assert sink.delivered[0][1] == []


@pytest.mark.parametrize(
    ("answer", "state", "code", "message"),
    [
        (
            {"code": 400, "message": "model flux is not available"},
            JobState.FAILED,
            "rejected",
            "model flux is not available",
        ),
        (
            {"status": "failed", "error": {"message": "insufficient balance"}},
            JobState.FAILED,
            "rejected",
            "insufficient balance",
        ),
        (
            {"created": 1800000000},
            JobState.INTERRUPTED,
            "bad_response",
            UNDERSTOOD + " (no task_id)",
        ),
        ({"data": [{"url": "{base}/files/now.png"}]}, JobState.SUCCEEDED, None, None),
    ],
)
async def test_create_answers_without_a_task(
    core: Core,
    agg: FakeAggregator,
    sink: RecordingSink,
    answer: dict[str, Any],
    state: JobState,
    code: str | None,
    message: str | None,
) -> None:
    """A refusal in a 200 envelope fails at once (nothing was made); an answer we cannot
    read may have created a task, so it is interrupted and never resent; an image is done."""
    answer = json.loads(json.dumps(answer).replace("{base}", agg.base_url))
    agg.script_next(create_answer=answer)
    job = await core.service.submit(request(model="flux"))
    done = await wait_delivered(core, job.id)
    assert (done.state, done.error_code, done.error_message) == (state, code, message)
    assert len(agg.create_calls()) == 1 and agg.polls() == []
    if state is JobState.SUCCEEDED:
        assert done.result_urls == [agg.base_url + "/files/now.png"]


@pytest.mark.parametrize(
    ("answer", "state", "urls"),
    [
        ({"status": "NOT_START"}, JobState.QUEUED, ()),
        ({"status": "IN_PROGRESS", "progress": "42%"}, JobState.RUNNING, ()),
        ({"progress": 10}, JobState.RUNNING, ()),
        (
            {"status": "done", "url": "https://x.test/a.png"},
            JobState.SUCCEEDED,
            ("https://x.test/a.png",),
        ),
        (
            {"data": ["https://x.test/a.png", "https://x.test/b.png"]},
            JobState.SUCCEEDED,
            ("https://x.test/a.png", "https://x.test/b.png"),
        ),
        (
            {"image_url": {"url": "https://x.test/c.png"}},
            JobState.SUCCEEDED,
            ("https://x.test/c.png",),
        ),
        ({"status": "failed", "fail_reason": "nsfw"}, JobState.FAILED, ()),
        ({"status": "succeeded", "url": "file:///etc/passwd"}, JobState.FAILED, ()),
        ({"url": "javascript:alert(1)"}, JobState.FAILED, ()),
        (["not", "an", "object"], JobState.FAILED, ()),
    ],
)
def test_parse_task(answer: Any, state: JobState, urls: tuple[str, ...]) -> None:
    update, found = parse_task(answer)
    assert update.state is state
    assert tuple(v for k, v in found if k == "url") == urls
    if state is JobState.RUNNING and "progress" in str(answer):
        assert update.progress in (10, 42)
    if answer == {"status": "failed", "fail_reason": "nsfw"}:
        assert update.error_message == "nsfw"


# -- the key stays in its header -----------------------------------------------------------------


async def test_the_aggregator_key_is_absent_from_logs_and_from_the_aa_gateway(
    core: Core,
    agg: FakeAggregator,
    sandbox: SandboxGateway,
    sink: RecordingSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for req in (
        request(model="flux"),
        request(model="nanobanana"),
        request(model="veo_fast", kind=Kind.VIDEO),
    ):
        job = await core.service.submit(req)  # one at a time: a user's own limit is 2
        assert (await wait_delivered(core, job.id)).state is JobState.SUCCEEDED
    assert AGG_KEY not in caplog.text
    assert sandbox.requests
    for r in sandbox.requests:
        assert AGG_KEY not in json.dumps(r.headers) + r.body.decode(errors="replace") + r.path
        assert "Authorization" not in r.headers
    for r in agg.requests:
        others = {k: v for k, v in r.headers.items() if k != "Authorization"}
        assert AGG_KEY not in json.dumps(others) + r.body.decode() + r.path + json.dumps(r.query)
        assert API_KEY not in json.dumps(r.headers) + r.body.decode()
        if not r.path.startswith("/files/"):
            assert r.headers["Authorization"] == AGG_KEY


async def test_a_gateway_that_echoes_the_key_does_not_make_us_repeat_it(
    agg_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = agg_settings(aggregator_api_key=SecretStr("sk-wrong-key-0000000000"))
    async with open_core(settings) as core, running(core):
        core.notifier.register(RecordingSink())
        job = await core.service.submit(request(model="flux"))
        done = await wait_delivered(core, job.id)
    assert done.state is JobState.FAILED and done.error_code == "auth"
    assert "sk-wrong-key-0000000000" not in caplog.text + (done.error_message or "")


# -- the CLI, as a new user would ----------------------------------------------------------------


async def test_generate_on_the_aggregator_from_the_cli(
    agg_settings: Callable[..., Settings], agg: FakeAggregator, tmp_path: Path
) -> None:
    settings = agg_settings()
    env = _env(settings, tmp_path)
    env.update(
        AGGREGATOR_BASE_URL=agg.base_url,
        AGGREGATOR_API_KEY=AGG_KEY,
        AGGREGATOR_MODELS=MODELS,
    )
    code, out, err = await _cli(
        env,
        "generate",
        "-m",
        "nano-banana-2",
        "-p",
        "a fox in snow",
        "-o",
        str(tmp_path / "o"),
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["model"] == "nano-banana-2"
    assert result["upstream_task_id"] in agg.tasks
    assert Path(result["files"][0]).read_bytes() == PNG_1PX
    assert AGG_KEY not in out + err
    del env["AGGREGATOR_API_KEY"]
    code, out, err = await _cli(env, "generate", "-m", "flux", "-p", "a fox")
    assert code == 2 and "AGGREGATOR_API_KEY is not set" in err
