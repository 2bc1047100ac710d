"""Every model family end to end: request -> job row -> gateway on loopback -> delivered."""

from __future__ import annotations

import pytest

from bot.app import Core
from bot.models import Delivery, JobState, Kind
from sandbox import SandboxGateway
from tests.conftest import API_KEY
from tests.helpers import PNG_1PX, RecordingSink, request, wait_delivered

DOCUMENTED_FIELDS = {
    "/api/v1/aa/openapi/sora/tasks": {"prompt", "model_code", "image_url", "reference_image_name"},
    "/v1/chat/completions": {"model", "stream", "messages", "aspect_ratio", "size", "quality"},
    "/v1/images/generations": {
        "model",
        "prompt",
        "aspect_ratio",
        "size",
        "quality",
        "resolution_preset",
        "image1",
        "image2",
        "image3",
        "images",
        "num_images",
        "async",
    },
}


@pytest.fixture
def sink(core: Core) -> RecordingSink:
    s = RecordingSink()
    core.notifier.register(s)
    return s


def assert_clean_calls(sandbox: SandboxGateway) -> None:
    """X-API-Key on every call; bodies hold only documented fields; no Bearer anywhere."""
    assert sandbox.requests
    for r in sandbox.requests:
        if r.path.startswith("/files/"):
            continue
        assert r.headers.get("X-API-Key") == API_KEY, r.path
        assert "Authorization" not in r.headers
        assert API_KEY not in r.path and API_KEY not in str(r.query)
        if r.method == "POST":
            assert isinstance(r.json, dict)
            assert set(r.json) <= DOCUMENTED_FIELDS[r.path], set(r.json) - DOCUMENTED_FIELDS[r.path]
            assert API_KEY not in r.body.decode()


@pytest.mark.parametrize(
    ("model", "kind", "result_ext"),
    [
        ("sora_studio", Kind.VIDEO, ".mp4"),
        ("sora_fast", Kind.VIDEO, ".mp4"),
        ("veo", Kind.VIDEO, ".mp4"),
        ("veo_fast", Kind.VIDEO, ".mp4"),
        ("gpt-image-2", Kind.IMAGE, ".png"),
        ("nanobanana", Kind.IMAGE, ".png"),
        ("nanobanana_pro", Kind.IMAGE, ".png"),
        ("gemini-3-pro-image-preview", Kind.IMAGE, ".png"),
    ],
)
async def test_each_model_succeeds_and_is_delivered_once(
    core: Core,
    sandbox: SandboxGateway,
    sink: RecordingSink,
    model: str,
    kind: Kind,
    result_ext: str,
) -> None:
    job = await core.service.submit(request(kind=kind, model=model))
    done = await wait_delivered(core, job.id)

    assert done.state is JobState.SUCCEEDED
    assert done.delivery is Delivery.DELIVERED
    assert done.result_urls and done.result_urls[0].startswith(sandbox.base_url + "/files/")
    assert len(sink.delivered) == 1
    ((delivered, files),) = sink.delivered
    assert files[0].path is not None and files[0].path.suffix == result_ext
    data = files[0].path.read_bytes()
    assert data.startswith(b"\x89PNG") if kind is Kind.IMAGE else data[4:8] == b"ftyp"
    assert len(sandbox.create_calls()) == 1
    assert_clean_calls(sandbox)
    if not core.catalog.get(model).synchronous:
        assert done.upstream_task_id


async def test_sora_late_url_keeps_polling_until_the_url_arrives(
    core: Core, sandbox: SandboxGateway, sink: RecordingSink
) -> None:
    sandbox.script_next(late_url_polls=3)
    job = await core.service.submit(
        request("a cat surfing at dawn", kind=Kind.VIDEO, model="sora_studio")
    )
    done = await wait_delivered(core, job.id)

    assert done.state is JobState.SUCCEEDED
    task = sandbox.tasks[done.upstream_task_id or ""]
    polls = [
        r
        for r in sandbox.requests
        if r.method == "GET" and task.task_id in r.path and not r.path.startswith("/files/")
    ]
    assert all(r.path == f"/api/v1/aa/sora/tasks/{task.task_id}" for r in polls)
    # At least the three polls that read progress 100 without a video_url, then the success.
    assert len(polls) >= 4
    assert done.price_usd == pytest.approx(0.65)  # Sora reports its own price


async def test_nanobanana_is_submitted_async_so_it_has_a_task_to_resume(
    core: Core, sandbox: SandboxGateway, sink: RecordingSink
) -> None:
    job = await core.service.submit(request(model="nanobanana", aspect_ratio="4x3", quality="4K"))
    done = await wait_delivered(core, job.id)

    create = sandbox.create_calls()[0]
    assert create.path == "/v1/images/generations"
    assert create.json == {
        "model": "nanobanana",
        "prompt": "a red fox in fresh snow",
        "aspect_ratio": "4:3",
        "quality": "4k",
        "async": True,
    }
    assert done.upstream_task_id and done.upstream_task_id.startswith("evt_")


async def test_reference_images_reach_the_gateway_as_data_urls_without_public_base(
    core: Core, sandbox: SandboxGateway, sink: RecordingSink
) -> None:
    image = await core.media.host(PNG_1PX, filename="me.png")
    job = await core.service.submit(
        request(
            "make this photo wave hello", kind=Kind.VIDEO, model="veo_reference", images=[image]
        )
    )
    await wait_delivered(core, job.id)

    body = sandbox.create_calls()[0].json
    assert body["model"] == "veo_reference"
    assert "aspect_ratio" not in body  # only veo and veo_fast honour it
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "make this photo wave hello"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


async def test_gpt_image_ratio_is_written_into_the_prompt(
    core: Core, sandbox: SandboxGateway, sink: RecordingSink
) -> None:
    job = await core.service.submit(request(model="gpt-image-2", aspect_ratio="16:9"))
    await wait_delivered(core, job.id)
    body = sandbox.create_calls()[0].json
    assert set(body) == {"model", "messages"}
    assert body["messages"][0]["content"].endswith("Aspect ratio 16:9.")


@pytest.mark.parametrize(
    ("model", "kind"),
    [("sora_fast", Kind.VIDEO), ("veo_fast", Kind.VIDEO), ("nanobanana", Kind.IMAGE)],
)
async def test_upstream_failure_is_recorded_and_delivered(
    core: Core, sandbox: SandboxGateway, sink: RecordingSink, model: str, kind: Kind
) -> None:
    sandbox.script_next(outcome="failed")
    job = await core.service.submit(request(kind=kind, model=model))
    done = await wait_delivered(core, job.id)
    assert done.state is JobState.FAILED
    assert done.error_message
    assert done.charged_usd == 0
    assert sink.delivered[0][1] == []


@pytest.mark.parametrize("model", ["sora_studio", "veo"])
async def test_refund_is_recorded_with_its_amount(
    core: Core, sandbox: SandboxGateway, sink: RecordingSink, model: str
) -> None:
    sandbox.script_next(outcome="refunded")
    job = await core.service.submit(request(kind=Kind.VIDEO, model=model))
    done = await wait_delivered(core, job.id)
    assert done.state is JobState.REFUNDED
    assert done.refunded_usd == pytest.approx(done.price_usd or -1)
    assert done.charged_usd == 0


async def test_synchronous_failure_from_gpt_image_is_failed_not_charged(
    core: Core, sandbox: SandboxGateway, sink: RecordingSink
) -> None:
    job = await core.service.submit(request("a [fail] poster", model="gpt-image-2"))
    done = await wait_delivered(core, job.id)
    assert done.state is JobState.FAILED
    assert done.error_code == "rejected"
    assert len(sandbox.create_calls()) == 1
