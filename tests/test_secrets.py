"""The API key never appears in a log record, an error message or the CLI's JSON."""

from __future__ import annotations

import io
import logging

import pytest

from bot.app import Core
from bot.logs import RedactingFilter, redact
from bot.messages import failure_text
from bot.models import JobState, Kind
from sandbox import SandboxGateway
from tests.conftest import API_KEY
from tests.helpers import RecordingSink, request, wait_delivered


async def test_key_is_absent_from_logs_errors_and_json(
    core: Core, sandbox: SandboxGateway, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.main.output import job_json

    caplog.set_level(logging.DEBUG)
    core.notifier.register(RecordingSink())
    # A gateway that echoes the key back in its error must not make us repeat it.
    sandbox.inject_fault(
        "POST",
        "/v1/chat/completions",
        status=400,
        body={"error": {"message": f"bad request for key {API_KEY}"}},
    )
    failed = await core.service.submit(request(kind=Kind.VIDEO, model="veo"))
    ok = await core.service.submit(request(kind=Kind.IMAGE, model="nanobanana"))
    failed = await wait_delivered(core, failed.id)
    ok = await wait_delivered(core, ok.id)
    assert failed.state is JobState.FAILED and ok.state is JobState.SUCCEEDED
    assert "***" in (failed.error_message or "")
    texts = [r.getMessage() for r in caplog.records] + [
        failure_text(failed, core.catalog),
        str(job_json(failed)),
        str(job_json(ok)),
        failed.error_message or "",
    ]
    assert all(API_KEY not in t for t in texts)
    # ... while the key did go where it belongs: the header of every call.
    assert all(
        r.headers.get("X-API-Key") == API_KEY
        for r in sandbox.requests
        if not r.path.startswith("/files/")
    )


def test_log_filter_redacts_keys_and_telegram_tokens() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(["sekrit-key-123"]))
    log = logging.getLogger("test.redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning(
            "calling %s with %s",
            "https://api.telegram.org/bot123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
            "sekrit-key-123",
        )
        try:
            raise RuntimeError("boom sekrit-key-123")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "sekrit-key-123" not in out
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in out
    assert "bot***/getMe" in out
    assert redact("x 987654321:ABCDEFGHIJKLMNOPQRSTUVWXYZ_12345 y", []) == "x *** y"
