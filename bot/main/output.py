"""What the command line answers with, a contract: its exit codes, the JSON object of a job,
and the one line (with its JSON, under --json) of a request or configuration refused."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.models import Job, JobState

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "config_error",
    "exit_code",
    "iso",
    "job_json",
    "rejection",
]

EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 2


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def job_json(job: Job, *, files: Sequence[Path] = ()) -> dict[str, Any]:
    """A job as the CLI's JSON object (keys are a contract)."""
    return {
        "id": job.id,
        "model": job.model,
        "kind": job.kind.value,
        "status": job.state.value,
        "progress": job.progress,
        "prompt": job.prompt,
        "result_urls": list(job.result_urls),
        "files": [str(f) for f in files],
        "error": job.error_message or job.error_code
        if job.state is not JobState.SUCCEEDED
        else None,
        "error_code": job.error_code,
        "upstream_task_id": job.upstream_task_id,
        "price_usd": job.price_usd,
        "refunded_usd": job.refunded_usd,
        "delivery": job.delivery.value,
        "platform": job.origin.platform,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
    }


def exit_code(job: Job) -> int:
    if job.state is JobState.SUCCEEDED:
        return EXIT_OK
    if job.state is JobState.REJECTED:
        return EXIT_REJECTED
    return EXIT_FAILED


def rejection(message: str, model: str | None = None) -> dict[str, Any]:
    """The JSON of a request refused before any job was recorded (the contract's keys)."""
    return {
        "id": None,
        "model": model,
        "status": JobState.REJECTED.value,
        "result_urls": [],
        "error": message,
        "upstream_task_id": None,
        "price_usd": None,
        "refunded_usd": None,
    }


def config_error(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps(rejection(message, getattr(args, "model", None))))
    print(f"genrelay: {message}", file=sys.stderr)
    return EXIT_REJECTED
