"""Webhooks on the real HTTP server: a callback makes us poll at once (so delivery follows
the upstream within a second), forged and used tokens change nothing, and a flood cannot
make us poll a task more than once a second. Polls are long apart here (30 s), so any
quick delivery is the webhook's doing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Delivery, Job, JobState
from bot.web import WebServer
from tests.conftest import running
from tests.fakes.aggregator import FakeAggregator
from tests.helpers import RecordingSink, request, wait_delivered

AGG_KEY = "sk-agg-WEBHOOK-0123456789abcdef"
SLOW_POLL_S = 30.0


@pytest.fixture
async def agg() -> AsyncIterator[FakeAggregator]:
    async with FakeAggregator(api_key=AGG_KEY) as fake:
        yield fake


@pytest.fixture
def build(
    make_settings: Callable[..., Settings], agg: FakeAggregator, unused_tcp_port: int
) -> Callable[..., Settings]:
    def settings(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "aggregator_base_url": agg.base_url,
            "aggregator_api_key": SecretStr(AGG_KEY),
            "aggregator_models": "flux",
            "http_host": "127.0.0.1",
            "http_port": unused_tcp_port,
            "public_base_url": f"http://127.0.0.1:{unused_tcp_port}",
            "poll_first_delay_s": SLOW_POLL_S,
            "poll_interval_s": SLOW_POLL_S,
        }
        values.update(overrides)
        return make_settings(**values)

    return settings


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Core, WebServer, RecordingSink]]:
    """A core with its tracker and notifier running, behind its own HTTP server."""
    async with open_core(settings) as core, running(core):
        web = WebServer(
            host=settings.http_host,
            port=settings.http_port,
            media=core.media,
            health=core.store.ping,
            metrics=core.metrics,
            webhooks=core.webhooks,
        )
        async with web:
            sink = RecordingSink()
            core.notifier.register(sink)
            yield core, web, sink


async def running_job(core: Core, agg: FakeAggregator) -> Job:
    """Submit a flux job and wait until the aggregator has its task."""
    job = await core.service.submit(request(model="flux"))
    async with asyncio.timeout(5):
        while True:
            fresh = await core.store.get(job.id)
            assert fresh is not None
            if fresh.upstream_task_id and fresh.state in (JobState.QUEUED, JobState.RUNNING):
                return fresh
            await asyncio.sleep(0.02)


async def test_a_webhook_brings_the_result_within_a_second(
    build: Callable[..., Settings], agg: FakeAggregator
) -> None:
    agg.script_next(duration=0.5)
    async with serving(build()) as (core, web, sink):
        job = await running_job(core, agg)
        done = await wait_delivered(core, job.id, timeout=5)

    assert done.state is JobState.SUCCEEDED and done.delivery is Delivery.DELIVERED
    task = agg.tasks[done.upstream_task_id or ""]
    assert task.finished_at is not None and done.delivered_at is not None
    assert done.delivered_at - task.finished_at < 1.0
    assert len(task.polls) == 1  # no scheduled poll was due: the webhook's poll did it
    # The callback URL: our public base, the provider, and the job's own long token.
    token = done.webhook_token or ""
    assert len(token) >= 32
    assert agg.create_calls()[0].json["query"] == {
        "async": "true",
        "webhook": f"{web.base_url}/webhooks/aggregator/{token}",
    }
    assert [status for _, status, _ in agg.webhook_calls] == [200]


async def test_without_a_webhook_polling_alone_waits_for_the_interval(
    build: Callable[..., Settings], agg: FakeAggregator
) -> None:
    agg.script_next(duration=0.2)
    async with serving(build(public_base_url=None)) as (core, web, sink):
        job = await running_job(core, agg)
        await asyncio.sleep(1.5)
        job = await core.store.get(job.id) or job
        task = agg.tasks[job.upstream_task_id or ""]
        assert task.finished_at is not None  # finished upstream over a second ago ...
        assert job.delivery is Delivery.NONE  # ... and we do not know yet
        assert job.next_poll_at is not None and job.next_poll_at - task.finished_at > 25
    assert "webhook" not in agg.create_calls()[0].json["query"]
    assert job.webhook_token is None
    assert agg.webhook_calls == []


async def test_forged_and_used_tokens_get_404_and_cause_no_poll(
    build: Callable[..., Settings], agg: FakeAggregator
) -> None:
    agg.script_next(duration=60, send_webhook=False)
    async with serving(build()) as (core, web, sink), httpx.AsyncClient() as http:
        job = await running_job(core, agg)
        token = job.webhook_token or ""
        polls_before = len(agg.polls())
        for path in (
            "/webhooks/aggregator/" + "A" * 32,  # well formed, nobody's
            "/webhooks/aggregator/" + token[:-1] + ("x" if token[-1] != "x" else "y"),
            "/webhooks/aggregator/short",
            "/webhooks/aa/" + token,  # a real token under another provider
            "/webhooks/nosuch/" + token,
        ):
            for method in ("POST", "GET"):
                resp = await http.request(method, web.base_url + path, json={"status": "done"})
                assert resp.status_code == 404, (method, path)
        await asyncio.sleep(0.3)
        assert len(agg.polls()) == polls_before
        again = await core.store.get(job.id)
        assert again is not None and again.next_poll_at == job.next_poll_at

        # Once the job is over, its own token is used up.
        await agg.finish(job.upstream_task_id or "")
        resp = await http.post(f"{web.base_url}/webhooks/aggregator/{token}")
        assert resp.status_code == 200
        done = await wait_delivered(core, job.id, timeout=5)
        assert done.state is JobState.SUCCEEDED
        polls_after = len(agg.polls())
        for method in ("POST", "GET"):
            resp = await http.request(method, f"{web.base_url}/webhooks/aggregator/{token}")
            assert resp.status_code == 404
        await asyncio.sleep(0.3)
        assert len(agg.polls()) == polls_after
        assert len(sink.delivered) == 1


async def test_a_flood_of_webhooks_polls_at_most_once_a_second(
    build: Callable[..., Settings], agg: FakeAggregator
) -> None:
    agg.script_next(duration=60, send_webhook=False)
    async with serving(build()) as (core, web, sink), httpx.AsyncClient() as http:
        job = await running_job(core, agg)
        url = f"{web.base_url}/webhooks/aggregator/{job.webhook_token}"
        start = time.time()
        statuses: list[int] = []
        while time.time() - start < 2.6:
            burst = await asyncio.gather(*(http.post(url, json={"n": i}) for i in range(5)))
            statuses += [r.status_code for r in burst]
            await asyncio.sleep(0.02)
        elapsed = time.time() - start
        await asyncio.sleep(0.2)
        task = agg.tasks[job.upstream_task_id or ""]
        polls = list(task.polls)

    assert len(statuses) > 50 and set(statuses) == {200}
    assert 2 <= len(polls) <= int(elapsed) + 1, polls
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert all(gap >= 0.9 for gap in gaps), gaps
