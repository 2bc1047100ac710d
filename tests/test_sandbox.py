"""The sandbox gateway, driven over real loopback HTTP with httpx and a manual clock."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from sandbox import RecordedRequest, SandboxGateway

KEY = "aa_live_sandbox_test"
SORA_CREATE = "/api/v1/aa/openapi/sora/tasks"
SORA_KEYS = {
    "task_id",
    "model_code",
    "status",
    "progress",
    "prompt",
    "image_url",
    "reference_image_url",
    "reference_image_name",
    "video_url",
    "has_reference_image",
    "has_video",
    "error_message",
    "price_usd",
    "refunded_usd",
    "created_at",
    "completed_at",
}
TASK_KEYS = {
    "task_id",
    "status",
    "model",
    "prompt",
    "progress",
    "created_at",
    "updated_at",
    "finished_at",
    "image_url",
    "video_url",
    "result_image_url",
    "expires_in",
    "error_code",
    "error_message",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def gw(clock: ManualClock) -> AsyncIterator[SandboxGateway]:
    async with SandboxGateway(api_key=KEY, clock=clock) as gateway:
        yield gateway


@pytest.fixture
async def client(gw: SandboxGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=gw.base_url, headers={"X-API-Key": KEY}, timeout=5.0
    ) as http:
        yield http


def sora_body(prompt: str = "A cinematic street food scene at night", **extra: Any) -> Any:
    return {"prompt": prompt, "model_code": "sora_studio", **extra}


def chat_body(model: str, text: str = "A fox in the snow", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "stream": False,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def png_size(data: bytes) -> tuple[int, int]:
    """Check the PNG structure (signature, chunk CRCs, pixel data) and return its size."""
    assert data[:8] == PNG_SIGNATURE
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + chunk)
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert kind == b"IEND"
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    return width, height


async def wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def in_flight(
    gw: SandboxGateway, call: Awaitable[httpx.Response]
) -> asyncio.Task[httpx.Response]:
    """Start a blocking call and wait until the sandbox has created its task."""
    before = len(gw.tasks)
    task = asyncio.ensure_future(call)
    await wait_for(lambda: len(gw.tasks) > before)
    await asyncio.sleep(0.03)
    assert not task.done()
    return task


# ------------------------------------------------------------------ Sora


async def test_sora_create_returns_full_task_object(client: httpx.AsyncClient) -> None:
    response = await client.post(SORA_CREATE, json=sora_body())
    assert response.status_code == 200
    task = response.json()
    assert set(task) == SORA_KEYS
    assert task["task_id"].startswith("task_")
    assert task["status"] == "queued"
    assert task["progress"] == 0
    assert task["model_code"] == "sora_studio"
    assert task["video_url"] is None
    assert task["has_video"] is False
    assert task["image_url"] is None
    assert task["price_usd"] == 0.65
    assert task["refunded_usd"] == 0.0
    assert task["completed_at"] is None
    assert len(task["created_at"]) == 19  # 2026-04-15T00:01:00, no zone
    assert "+" not in task["created_at"]


async def test_sora_default_model_and_reference_image(client: httpx.AsyncClient) -> None:
    response = await client.post(
        SORA_CREATE,
        json={
            "prompt": "Turn this into a perfume ad",
            "image_url": "https://example.com/ref.jpg",
            "reference_image_name": "ref.jpg",
        },
    )
    task = response.json()
    assert task["model_code"] == "sora_studio"
    assert task["image_url"] == task["reference_image_url"] == "https://example.com/ref.jpg"
    assert task["reference_image_name"] == "ref.jpg"
    assert task["has_reference_image"] is True


async def test_sora_progress_and_late_url_quirk(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    task_id = (await client.post(SORA_CREATE, json=sora_body())).json()["task_id"]
    poll = f"/api/v1/aa/sora/tasks/{task_id}"

    clock.advance(0.5)  # < 10% of 8 s
    assert (await client.get(poll)).json()["status"] == "queued"
    clock.advance(3.5)  # 4 s of 8
    mid = (await client.get(poll)).json()
    assert (mid["status"], mid["progress"], mid["video_url"]) == ("processing", 50, None)

    clock.advance(4.0)
    for _ in range(2):  # late_url_polls=2: progress 100, no URL yet
        late = (await client.get(poll)).json()
        assert (late["status"], late["progress"]) == ("processing", 100)
        assert late["video_url"] is None
        assert late["has_video"] is False
        assert late["completed_at"] is None
    done = (await client.get(poll)).json()
    assert set(done) == SORA_KEYS
    assert done["status"] == "completed"
    assert done["has_video"] is True
    assert done["video_url"].startswith(gw.base_url + "/files/")
    assert done["completed_at"] is not None
    assert done["error_message"] is None

    video = await client.get(done["video_url"], headers={"X-API-Key": ""})
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"


async def test_sora_failure(client: httpx.AsyncClient, clock: ManualClock) -> None:
    task_id = (await client.post(SORA_CREATE, json=sora_body("a dragon [fail]"))).json()["task_id"]
    clock.advance(8)
    poll = f"/api/v1/aa/sora/tasks/{task_id}"
    statuses = [(await client.get(poll)).json()["status"] for _ in range(3)]
    assert statuses == ["processing", "processing", "failed"]
    failed = (await client.get(poll)).json()
    assert failed["error_message"]
    assert failed["video_url"] is None
    assert failed["completed_at"] is not None
    assert failed["refunded_usd"] == 0.0


async def test_sora_refund(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    gw.script_next("refunded", late_url_polls=0)
    task_id = (await client.post(SORA_CREATE, json=sora_body())).json()["task_id"]
    clock.advance(8)
    refunded = (await client.get(f"/api/v1/aa/sora/tasks/{task_id}")).json()
    assert refunded["status"] == "refunded"
    assert refunded["refunded_usd"] == refunded["price_usd"] == 0.65
    assert refunded["error_message"]
    assert refunded["video_url"] is None


@pytest.mark.parametrize(
    "body",
    [
        sora_body(temperature=0.7),
        sora_body(top_p=0.9),
        {"prompt": "ab"},
        {"model_code": "sora_studio"},
        sora_body(model_code="sora_turbo"),
        sora_body(image_url=42),
    ],
)
async def test_sora_rejects_bad_requests(
    client: httpx.AsyncClient, gw: SandboxGateway, body: Any
) -> None:
    response = await client.post(SORA_CREATE, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert gw.tasks == {}


async def test_sora_poll_path_has_no_openapi_segment(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    task_id = (await client.post(SORA_CREATE, json=sora_body())).json()["task_id"]
    assert (await client.get(f"/api/v1/aa/sora/tasks/{task_id}")).status_code == 200
    assert (await client.get(f"/api/v1/aa/openapi/sora/tasks/{task_id}")).status_code in (
        404,
        405,
    )


# ------------------------------------------------------------------ auth, unknowns


async def test_missing_or_wrong_key_is_401(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    for headers in ({"X-API-Key": "aa_live_wrong"}, {"Authorization": f"Bearer {KEY}"}):
        async with httpx.AsyncClient(base_url=gw.base_url, headers=headers) as other:
            response = await other.post(SORA_CREATE, json=sora_body())
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    assert gw.tasks == {}
    assert len(gw.requests) == 2  # recorded all the same


async def test_unknown_model_and_task(client: httpx.AsyncClient) -> None:
    for path, body in (
        ("/v1/chat/completions", chat_body("dall-e-9")),
        ("/v1/images/generations", {"model": "gpt-image-2", "prompt": "x"}),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    for path in ("/v1/tasks/evt_nope", "/api/v1/aa/sora/tasks/task_nope"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"


async def test_task_families_do_not_cross(client: httpx.AsyncClient) -> None:
    sora_id = (await client.post(SORA_CREATE, json=sora_body())).json()["task_id"]
    veo_id = (await client.post("/v1/chat/completions", json=chat_body("veo"))).json()["id"]
    assert (await client.get(f"/v1/tasks/{sora_id}")).status_code == 404
    assert (await client.get(f"/api/v1/aa/sora/tasks/{veo_id}")).status_code == 404


async def test_invalid_json_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# ------------------------------------------------------------------ video via chat completions


async def test_veo_create_and_poll_to_success(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body("veo"))
    assert response.status_code == 200
    created = response.json()
    assert set(created) == {"id", "object", "created", "model", "task"}
    assert created["object"] == "video.task"
    assert created["model"] == "veo"
    assert isinstance(created["created"], int)
    task = created["task"]
    assert set(task) == TASK_KEYS
    assert task["task_id"] == created["id"]
    assert (task["status"], task["progress"], task["video_url"]) == ("queued", 0, None)
    assert task["prompt"] == "A fox in the snow"

    poll = f"/v1/tasks/{created['id']}"
    clock.advance(3)  # 3 s of 6
    running = (await client.get(poll)).json()
    assert set(running) == TASK_KEYS
    assert (running["status"], running["progress"]) == ("running", 50)
    clock.advance(3)
    done = (await client.get(poll)).json()  # no late-URL polls for video by default
    assert done["status"] == "succeeded"
    assert done["video_url"].startswith(gw.base_url)
    assert done["finished_at"] is not None
    assert done["result_image_url"] is None
    assert (done["error_code"], done["error_message"]) == (None, None)


async def test_veo_options_and_limits(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    ok = await client.post("/v1/chat/completions", json=chat_body("veo_fast", aspect_ratio="9:16"))
    assert ok.status_code == 200
    assert gw.tasks[ok.json()["id"]].aspect_ratio == "9:16"
    full = await client.post(
        "/v1/chat/completions", json=chat_body("firefly-veo31-ref-9x16", "keep the bottle")
    )
    assert full.status_code == 200
    assert full.json()["model"] == "firefly-veo31-ref-9x16"

    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    text = {"type": "text", "text": "keep the bottle"}
    two = await client.post(
        "/v1/chat/completions",
        json={"model": "veo_reference", "messages": [{"role": "user", "content": [text, image]}]},
    )
    assert two.status_code == 200
    assert two.json()["task"]["image_url"] == "https://example.com/a.png"

    bad_bodies: list[dict[str, Any]] = [
        chat_body("veo", aspect_ratio="4:3"),
        chat_body("veo", stream=True),
        {"model": "veo_reference", "messages": [{"role": "user", "content": [text] + [image] * 3}]},
        {"model": "veo", "messages": [{"role": "user", "content": [image]}]},
        {"model": "veo", "messages": [{"role": "system", "content": "only a system text"}]},
        {"model": "veo", "messages": []},
        {"model": "veo", "messages": [{"role": "user", "content": "x"}] * 21},
    ]
    for body in bad_bodies:
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["message"]


async def test_veo_failure_and_refund(client: httpx.AsyncClient, clock: ManualClock) -> None:
    failed_id = (
        await client.post("/v1/chat/completions", json=chat_body("veo", "x [fail]"))
    ).json()["id"]
    refunded_id = (
        await client.post("/v1/chat/completions", json=chat_body("veo_fast", "x [refund]"))
    ).json()["id"]
    clock.advance(6)
    failed = (await client.get(f"/v1/tasks/{failed_id}")).json()
    assert failed["status"] == "failed"
    assert failed["error_code"] == "content_policy"
    assert failed["error_message"]
    assert failed["video_url"] is None
    refunded = (await client.get(f"/v1/tasks/{refunded_id}")).json()
    assert refunded["status"] == "refunded"
    assert refunded["error_code"]
    assert refunded["video_url"] is None


async def test_slow_keyword(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    task_id = (await client.post("/v1/chat/completions", json=chat_body("veo", "x [slow]"))).json()[
        "id"
    ]
    assert gw.tasks[task_id].duration == 60.0


async def test_script_next_late_polls_curve_and_finish(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    gw.script_next("succeeded", duration=10, late_url_polls=1, progress_curve=[100, 5])
    first = (await client.post("/v1/chat/completions", json=chat_body("veo"))).json()["id"]
    second = (await client.post("/v1/chat/completions", json=chat_body("veo"))).json()["id"]
    poll = f"/v1/tasks/{first}"
    clock.advance(2)
    # a curve may read 100 early and go backwards: the status is what counts
    assert [(await client.get(poll)).json()["progress"] for _ in range(3)] == [100, 5, 5]
    clock.advance(8)
    late = (await client.get(poll)).json()
    assert (late["status"], late["progress"], late["video_url"]) == ("running", 100, None)
    assert (await client.get(poll)).json()["status"] == "succeeded"

    assert gw.tasks[second].duration == 6.0  # the script was used up by the first task
    gw.finish(second, "refunded")
    assert (await client.get(f"/v1/tasks/{second}")).json()["status"] == "refunded"
    with pytest.raises(ValueError):
        gw.finish(second)


# ------------------------------------------------------------------ GPT Image 2


async def test_gpt_image_waits_then_alternates_markdown_and_bare(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    call = await in_flight(gw, client.post("/v1/chat/completions", json=chat_body("gpt-image-2")))
    clock.advance(2)
    first = (await call).json()
    assert first["object"] == "chat.completion"
    assert first["model"] == "gpt-image-2"
    choice = first["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    markdown = choice["message"]["content"]
    assert "![image](" in markdown
    url = markdown.split("![image](", 1)[1].split(")", 1)[0]
    assert markdown.strip() != url

    gw.script_next(duration=0)
    second = (await client.post("/v1/chat/completions", json=chat_body("gpt-image-2"))).json()
    bare = second["choices"][0]["message"]["content"]
    assert bare.startswith("http://") and " " not in bare and bare != url

    for link in (url, bare):
        image = await client.get(link)
        assert image.headers["content-type"] == "image/png"
        png_size(image.content)


async def test_gpt_image_accepts_six_references_not_seven(
    client: httpx.AsyncClient, gw: SandboxGateway
) -> None:
    gw.durations["gpt-image-2"] = 0
    image = {"type": "image_url", "image_url": {"url": "https://example.com/r.png"}}
    text = {"type": "text", "text": "poster, 1:1"}
    for count, status in ((6, 200), (7, 400)):
        body = {
            "model": "gpt-image-2",
            "messages": [{"role": "user", "content": [text] + [image] * count}],
        }
        assert (await client.post("/v1/chat/completions", json=body)).status_code == status


async def test_gpt_image_failure_is_an_error_response(
    client: httpx.AsyncClient, gw: SandboxGateway
) -> None:
    gw.durations["gpt-image-2"] = 0
    response = await client.post("/v1/chat/completions", json=chat_body("gpt-image-2", "[fail]"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy"


# ------------------------------------------------------------------ Nano Banana


async def test_nanobanana_sync_with_alias(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    body = {
        "model": "gemini-2.5-flash-image",
        "prompt": "Keep the product shape unchanged",
        "image1": "https://example.com/1.png",
        "image2": "https://example.com/2.png",
        "resolution_preset": "4K",
        "aspect_ratio": "4x3",
        "num_images": 1,
    }
    call = await in_flight(gw, client.post("/v1/images/generations", json=body))
    clock.advance(2)
    response = await call
    assert response.status_code == 200
    result = response.json()
    assert set(result) == {"created", "model", "data"}
    assert result["model"] == "nanobanana"
    (task,) = gw.tasks.values()
    assert (task.aspect_ratio, task.quality, len(task.image_urls)) == ("4:3", "4k", 2)
    image = await client.get(result["data"][0]["url"])
    assert png_size(image.content) == (64, 48)


async def test_nanobanana_async_task(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    body = {"model": "nanobanana_pro", "prompt": "skincare", "aspect_ratio": "1:1", "async": True}
    created = (await client.post("/v1/images/generations", json=body)).json()
    assert created["object"] == "video.task"
    assert created["model"] == "nanobanana_pro"
    assert created["task"] == {
        "task_id": created["id"],
        "status": "queued",
        "progress": 0,
        "result_image_url": None,
    }
    poll = f"/v1/tasks/{created['id']}"
    clock.advance(1.5)
    running = (await client.get(poll)).json()
    assert (running["status"], running["progress"]) == ("running", 50)
    clock.advance(1.5)
    done = (await client.get(poll)).json()
    assert set(done) == TASK_KEYS
    assert done["status"] == "succeeded"
    assert done["expires_in"] == 86400
    assert done["video_url"] is None
    image = await client.get(done["result_image_url"])
    assert png_size(image.content) == (64, 64)

    clock.advance(86401)  # the result URL expires
    assert (await client.get(done["result_image_url"])).status_code == 403


async def test_nanobanana_images_differ_per_task(
    client: httpx.AsyncClient, gw: SandboxGateway
) -> None:
    gw.durations["nanobanana"] = 0
    urls = [
        (
            await client.post("/v1/images/generations", json={"model": "nanobanana", "prompt": p})
        ).json()["data"][0]["url"]
        for p in ("a", "b")
    ]
    first, second = [(await client.get(u)).content for u in urls]
    assert png_size(first) == png_size(second) == (64, 36)  # default 16:9
    assert first != second


@pytest.mark.parametrize(
    "extra",
    [
        {"num_images": 2},
        {"aspect_ratio": "21:9"},
        {"quality": "8k"},
        {"size": "huge"},
        {"async": "yes"},
        {"images": ["https://example.com/x.png"] * 7},
        {"prompt": ""},
    ],
)
async def test_nanobanana_rejects_bad_requests(
    client: httpx.AsyncClient, gw: SandboxGateway, extra: dict[str, Any]
) -> None:
    body = {"model": "nanobanana", "prompt": "a cup", **extra}
    response = await client.post("/v1/images/generations", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert gw.tasks == {}


async def test_nanobanana_size_infers_ratio(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    gw.durations["nanobanana"] = 0
    for size, ratio in (("1024x1024", "1:1"), ("1536x1024", "4:3"), ("9:16", "9:16")):
        body = {"model": "nanobanana", "prompt": "a cup", "size": size}
        assert (await client.post("/v1/images/generations", json=body)).status_code == 200
        assert list(gw.tasks.values())[-1].aspect_ratio == ratio


async def test_nanobanana_chat_edit(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    gw.durations["nanobanana_pro"] = 0
    gw.chat_link_style = "bare"
    body = {
        "model": "gemini-3-pro-image-preview",
        "quality": "ultra",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "switch the background"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/p.png"}},
                ],
            }
        ],
    }
    result = (await client.post("/v1/chat/completions", json=body)).json()
    assert result["object"] == "chat.completion"
    assert result["model"] == "nanobanana_pro"
    url = result["choices"][0]["message"]["content"]
    assert (await client.get(url)).content.startswith(PNG_SIGNATURE)
    assert list(gw.tasks.values())[-1].quality == "4k"


# ------------------------------------------------------------------ faults


async def test_fault_plain_500_then_normal(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    fault = gw.inject_fault("POST", SORA_CREATE, count=2)
    for _ in range(2):
        response = await client.post(SORA_CREATE, json=sora_body())
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "server_error"
    assert (fault.remaining, fault.hits) == (0, 2)
    assert gw.tasks == {}  # not processed
    assert (await client.post(SORA_CREATE, json=sora_body())).status_code == 200
    assert len(gw.create_calls()) == 3


async def test_fault_html_502(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    gw.inject_fault("GET", "/v1/tasks/", status=502, body=page, content_type="text/html")
    response = await client.get("/v1/tasks/whatever")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == page
    with pytest.raises(ValueError):
        response.json()


async def test_fault_429_retry_after(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    gw.inject_fault("*", "/v1/", status=429, headers={"Retry-After": "7"})
    response = await client.post("/v1/images/generations", json={"model": "nanobanana"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_fault_401(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    gw.inject_fault("GET", "/api/v1/aa/sora/tasks/", status=401)
    response = await client.get("/api/v1/aa/sora/tasks/task_x")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_fault_malformed_json(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    gw.inject_fault("POST", SORA_CREATE, status=200, body='{"task_id": ')
    response = await client.post(SORA_CREATE, json=sora_body())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        response.json()


async def test_fault_hang_times_out_client(client: httpx.AsyncClient, gw: SandboxGateway) -> None:
    gw.inject_fault("POST", SORA_CREATE, delay=30)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(SORA_CREATE, json=sora_body(), timeout=0.2)
    assert gw.tasks == {}


async def test_fault_after_processing_creates_task_but_loses_response(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    gw.inject_fault("POST", SORA_CREATE, status=502, after_processing=True)
    response = await client.post(SORA_CREATE, json=sora_body())
    assert response.status_code == 502
    assert "task_id" not in response.text
    (task_id,) = gw.tasks
    assert len(gw.create_calls()) == 1
    clock.advance(8)
    assert (await client.get(f"/api/v1/aa/sora/tasks/{task_id}")).json()["progress"] == 100

    gw.inject_fault("POST", "/v1/chat/completions", delay=30, after_processing=True)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/chat/completions", json=chat_body("veo"), timeout=0.2)
    assert len(gw.tasks) == 2
    assert len(gw.create_calls()) == 2


# ------------------------------------------------------------------ request log, files, lifecycle


async def test_request_log(
    client: httpx.AsyncClient, gw: SandboxGateway, clock: ManualClock
) -> None:
    await client.post(SORA_CREATE, json=sora_body(), params={"trace": "1"})
    await client.get("/v1/tasks/nothing")
    create, poll = gw.requests
    assert (create.method, create.path, create.query) == ("POST", SORA_CREATE, {"trace": "1"})
    assert create.headers["X-API-Key"] == KEY
    assert create.json == sora_body()
    assert create.body.startswith(b"{")
    assert create.time == clock.now
    assert (poll.method, poll.json, poll.body) == ("GET", None, b"")
    assert gw.create_calls() == [create]


async def test_files_need_no_key_and_unknown_is_404(
    client: httpx.AsyncClient, gw: SandboxGateway
) -> None:
    gw.durations["nanobanana"] = 0
    result = await client.post(
        "/v1/images/generations", json={"model": "nanobanana", "prompt": "a"}
    )
    url = result.json()["data"][0]["url"]
    async with httpx.AsyncClient() as anonymous:
        image = await anonymous.get(url)
        missing = await anonymous.get(f"{gw.base_url}/files/nope.png")
    assert image.status_code == 200
    assert image.content[:8] == PNG_SIGNATURE
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"


async def test_no_key_configured_accepts_anything() -> None:
    async with (
        SandboxGateway(durations={"nanobanana": 0}) as gateway,
        httpx.AsyncClient(base_url=gateway.base_url) as http,
    ):
        response = await http.post(
            "/v1/images/generations", json={"model": "nanobanana", "prompt": "a"}
        )
        assert response.status_code == 200
    with pytest.raises(RuntimeError):
        _ = gateway.base_url


async def test_constructor_validates_and_does_no_io() -> None:
    gateway = SandboxGateway(speed=0.5, durations={"veo": 10})
    assert gateway.duration_for("veo") == 5.0
    assert gateway.duration_for("firefly-veo31-ref-9x16") == 3.0
    with pytest.raises(RuntimeError):
        _ = gateway.base_url
    with pytest.raises(ValueError):
        SandboxGateway(durations={"veo3": 1})


async def test_stop_releases_a_hanging_request() -> None:
    clock = ManualClock()
    gateway = SandboxGateway(clock=clock)
    await gateway.start()
    gateway.inject_fault("POST", "/v1/", delay=600)
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        call = asyncio.ensure_future(http.post("/v1/tasks", json={}))
        await wait_for(lambda: len(gateway.requests) == 1)
        await asyncio.wait_for(gateway.stop(), timeout=3)
        response = await asyncio.wait_for(call, timeout=3)
    assert response.status_code == 500


async def test_a_hook_runs_on_the_next_matching_request_before_it_is_handled(
    client: httpx.AsyncClient, gw: SandboxGateway
) -> None:
    seen: list[str] = []
    released = asyncio.Event()

    async def hold(request: RecordedRequest) -> None:
        seen.append(f"{request.method} {request.path} tasks={len(gw.tasks)}")
        await released.wait()

    gw.on_next("POST", "/v1/images/", hold)
    body = {"model": "nanobanana", "prompt": "A fox in the snow", "async": True}
    first = asyncio.create_task(client.post("/v1/images/generations", json=body))
    await wait_for(lambda: bool(seen))
    assert not gw.tasks  # held before it is handled
    released.set()
    assert (await first).status_code == 200
    assert (await client.post("/v1/images/generations", json=body)).status_code == 200
    assert seen == ["POST /v1/images/generations tasks=0"]  # once
    assert len(gw.tasks) == 2
