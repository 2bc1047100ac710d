"""Shared fixtures: a clean environment, settings on tmp_path, the sandbox gateway as the fake
gateway on loopback, a running core, and a store's DATABASE_URL on either engine (a fresh
SQLite file, or a fresh schema on the test PostgreSQL server: tests/pg.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.runner import Runner
from sandbox import SandboxGateway
from tests.pg import pg_schema

API_KEY = "aa_live_TESTKEY_0123456789abcdef"


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A developer's shell or .env never leaks into a test."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'genrelay.db'}",
            "data_dir": tmp_path / "data",
            "aa_api_key": SecretStr(API_KEY),
            # The sandbox's runs are far shorter than the catalog's typical ones: tests that
            # are not about the polling policy poll on a short fixed schedule.
            "poll_policy": "fixed",
            "poll_first_delay_s": 0.05,
            "poll_interval_s": 0.05,
            "progress_interval_s": 0.0,
            "gateway_timeout_s": 2.0,
            "sync_timeout_s": 5.0,
            "http_port": 0,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxGateway]:
    """The fake AA gateway: short durations, a key, no late-URL polls unless a test asks."""
    async with SandboxGateway(api_key=API_KEY, speed=0.05, late_url_polls=1) as gw:
        yield gw


@pytest.fixture
def settings(make_settings: Callable[..., Settings], sandbox: SandboxGateway) -> Settings:
    return make_settings(aa_base_url=sandbox.base_url)


@contextlib.asynccontextmanager
async def running(core: Core) -> AsyncIterator[Core]:
    """The core's loops running for the block (bot.runner.Runner, as `genrelay run` has)."""
    async with Runner(core):
        yield core


@pytest.fixture
async def core(settings: Settings) -> AsyncIterator[Core]:
    """A core on the sandbox, with its tracker and notifier running."""
    async with open_core(settings) as c, running(c):
        yield c


@pytest.fixture
def log_records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def pg_url() -> Iterator[str]:
    """DATABASE_URL of an empty schema of its own on the test PostgreSQL server."""
    with pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """DATABASE_URL of a new store on each engine in turn (tests of the store's contract)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'genrelay.db'}"
    return str(request.getfixturevalue("pg_url"))
