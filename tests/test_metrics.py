"""/healthz, /readyz and /metrics on the service's own HTTP server, after a short real run
on both gateways (loopback fakes), parsed with the Prometheus text parser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.config import Settings
from bot.errors import RequestRejected
from bot.main.wiring import open_core
from bot.metrics import Metrics
from bot.models import JobState, Kind
from bot.web import WebServer
from sandbox import SandboxGateway
from tests.conftest import running
from tests.fakes.aggregator import FakeAggregator
from tests.helpers import RecordingSink, request, wait_delivered

AGG_KEY = "sk-agg-METRICS-0123456789abcdef"


@pytest.fixture
async def agg() -> AsyncIterator[FakeAggregator]:
    async with FakeAggregator(api_key=AGG_KEY) as fake:
        yield fake


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway, agg: FakeAggregator
) -> Settings:
    return make_settings(
        aa_base_url=sandbox.base_url,
        aggregator_base_url=agg.base_url,
        aggregator_api_key=SecretStr(AGG_KEY),
        aggregator_models="flux",
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_report_the_counts_of_a_short_run(
    settings: Settings, sandbox: SandboxGateway, agg: FakeAggregator
) -> None:
    async with open_core(settings) as core, running(core):
        sink = RecordingSink(fail_times=1)  # the first delivery fails once, then goes
        core.notifier.register(sink)
        sandbox.inject_fault("GET", "/v1/tasks/", status=500)  # one AA poll fails
        a = await core.service.submit(request(model="flux"))
        b = await core.service.submit(request(model="nanobanana"))
        for job in (a, b):
            assert (await wait_delivered(core, job.id)).state is JobState.SUCCEEDED
        with pytest.raises(RequestRejected):
            await core.service.submit(request(model="veo_fast", kind=Kind.IMAGE))
        core.metrics.limit_hit("user_daily_images")
        async with (
            WebServer(
                host="127.0.0.1",
                port=0,
                media=core.media,
                health=core.store.ping,
                metrics=core.metrics,
                webhooks=core.webhooks,
            ) as web,
            httpx.AsyncClient() as http,
        ):
            webhook = await http.post(web.base_url + "/webhooks/aggregator/" + "A" * 32)
            resp = await http.get(web.base_url + "/metrics")

    assert resp.status_code == 200 and webhook.status_code == 404
    assert resp.headers["content-type"].startswith("text/plain")
    found = samples(resp.text)

    def v(name: str, **labels: str) -> float:
        return value(found, f"genrelay_{name}", **labels)

    assert v("jobs", model="flux", state="succeeded") == 1
    assert v("jobs", model="nanobanana", state="succeeded") == 1
    assert v("jobs", model="veo_fast", state="rejected") == 1
    flux = {"provider": "aggregator", "model": "flux"}
    banana = {"provider": "aa", "model": "nanobanana"}
    assert v("jobs_finished_total", state="succeeded", **flux) == 1
    assert v("jobs_finished_total", state="succeeded", **banana) == 1
    assert v("upstream_requests_total", provider="aggregator", endpoint="agg.create") == 1
    assert v("upstream_requests_total", provider="aggregator", endpoint="agg.poll") >= 1
    assert v("upstream_requests_total", provider="aa", endpoint="image.create") == 1
    aa_polls = len([r for r in sandbox.requests if r.path.startswith("/v1/tasks/")])
    assert v("upstream_requests_total", provider="aa", endpoint="image.poll") == aa_polls
    aa_poll_500 = {"provider": "aa", "endpoint": "image.poll", "error": "unavailable"}
    assert v("upstream_errors_total", **aa_poll_500) == 1
    for labels in (flux, banana):
        assert v("submit_to_upstream_done_seconds_count", **labels) == 1
        assert v("submit_to_upstream_done_seconds_sum", **labels) > 0
    assert v("upstream_done_to_delivery_seconds_count", platform="test") == 2
    assert v("deliveries_total", platform="test", outcome="delivered") == 2
    assert v("delivery_retries_total", platform="test") == 1
    assert v("limits_hit_total", limit="user_daily_images") == 1
    assert v("webhooks_total", provider="aggregator", outcome="unknown") == 1


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    one.limit_hit("x")
    assert one.registry.get_sample_value("genrelay_limits_hit_total", {"limit": "x"}) == 1
    assert two.registry.get_sample_value("genrelay_limits_hit_total", {"limit": "x"}) is None


def test_a_webhook_label_cannot_grow_from_a_url() -> None:
    metrics = Metrics(providers={"aggregator"})
    for i in range(50):
        metrics.webhook(f"junk{i}", "unknown")
    assert (
        metrics.registry.get_sample_value(
            "genrelay_webhooks_total", {"provider": "other", "outcome": "unknown"}
        )
        == 50
    )


@dataclass
class FakeAdapter:
    platform: str
    connected: bool
    problem: str | None = None
    elsewhere: str | None = None  # the replica holding it, when another one does


async def test_readyz_needs_every_configured_adapter_connected(settings: Settings) -> None:
    telegram = FakeAdapter("telegram", connected=False, problem="Telegram did not answer")
    adapters: list[FakeAdapter] = []
    async with open_core(settings) as core:
        server = WebServer(
            host="127.0.0.1",
            port=0,
            media=core.media,
            health=core.store.ping,
            adapters=adapters,
            expected=["telegram", "discord"],
        )
        async with server as web, httpx.AsyncClient() as http:
            assert (await http.get(web.base_url + "/healthz")).status_code == 200
            resp = await http.get(web.base_url + "/readyz")  # configured, not started yet
            assert resp.status_code == 503
            assert resp.json()["adapters"] == {"telegram": False, "discord": False}
            assert resp.json()["not_ready"] == {
                "telegram": "not started yet",
                "discord": "not started yet",
            }
            adapters.append(telegram)
            adapters.append(FakeAdapter("discord", connected=True))
            resp = await http.get(web.base_url + "/readyz")
            assert resp.status_code == 503
            assert resp.json() == {
                "ready": False,
                "database": True,
                "adapters": {"telegram": False, "discord": True},
                "held_elsewhere": {},
                "not_ready": {"telegram": "Telegram did not answer"},
            }
            telegram.connected = True
            resp = await http.get(web.base_url + "/readyz")
            assert resp.status_code == 200 and resp.json()["ready"] is True
            assert (await http.get(web.base_url + "/metrics")).status_code == 404  # not given


async def test_healthz_and_readyz_fail_when_the_database_does_not_answer(
    settings: Settings,
) -> None:
    async def broken() -> bool:
        raise RuntimeError("the job store is not open")

    async with open_core(settings) as core:
        server = WebServer(host="127.0.0.1", port=0, media=core.media, health=broken)
        async with server as web, httpx.AsyncClient() as http:
            assert (await http.get(web.base_url + "/healthz")).status_code == 503
            resp = await http.get(web.base_url + "/readyz")
            assert resp.status_code == 503 and resp.json()["database"] is False
            assert resp.json()["not_ready"] == {"database": "the job store does not answer"}
