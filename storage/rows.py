"""Rows and values: a job as the jobs table's columns and back, and a session from its row,
for the queries of sqlite.py and sessions.py."""

from __future__ import annotations

import json
from typing import Any

from bot.models import Delivery, Job, JobState, Kind, Origin, ReferenceImage
from bot.sessions import Session
from storage.dialect import Row

__all__ = ["COLUMNS", "NOT_SAVED", "job_from_row", "job_to_row", "session_from_row"]

COLUMNS = (
    "id",
    "kind",
    "model",
    "prompt",
    "origin",
    "platform",
    "chat_id",
    "user_id",
    "images",
    "aspect_ratio",
    "quality",
    "action",
    "parent_job_id",
    "state",
    "delivery",
    "upstream_task_id",
    "progress",
    "result_urls",
    "price_usd",
    "refunded_usd",
    "error_code",
    "error_message",
    "status_message_id",
    "created_at",
    "updated_at",
    "submitted_at",
    "finished_at",
    "delivered_at",
    "deadline_at",
    "next_poll_at",
    "poll_count",
    "error_streak",
    "not_found_streak",
    "next_delivery_at",
    "delivery_attempts",
    "owner",
    "scope_id",
    "hold",
    "hold_expires_at",
    "webhook_token",
    "request_key",
    "status_claimed_at",
)
# Written only by their own queries (set once, or claimed before a send), never by a
# whole-row save of a copy that may be older.
NOT_SAVED = ("id", "request_key", "status_claimed_at")


def job_to_row(job: Job) -> dict[str, Any]:
    """A job as the jobs table's columns (COLUMNS), its structured fields as JSON."""
    return {
        "id": job.id,
        "kind": job.kind.value,
        "model": job.model,
        "prompt": job.prompt,
        "origin": json.dumps(job.origin.to_dict(), separators=(",", ":")),
        "platform": job.origin.platform,
        "chat_id": job.origin.chat_id,
        "user_id": job.origin.user_id,
        "images": json.dumps([i.to_dict() for i in job.images], separators=(",", ":")),
        "aspect_ratio": job.aspect_ratio,
        "quality": job.quality,
        "action": job.action,
        "parent_job_id": job.parent_job_id,
        "state": job.state.value,
        "delivery": job.delivery.value,
        "upstream_task_id": job.upstream_task_id,
        "progress": job.progress,
        "result_urls": json.dumps(job.result_urls),
        "price_usd": job.price_usd,
        "refunded_usd": job.refunded_usd,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "status_message_id": job.status_message_id,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "submitted_at": job.submitted_at,
        "finished_at": job.finished_at,
        "delivered_at": job.delivered_at,
        "deadline_at": job.deadline_at,
        "next_poll_at": job.next_poll_at,
        "poll_count": job.poll_count,
        "error_streak": job.error_streak,
        "not_found_streak": job.not_found_streak,
        "next_delivery_at": job.next_delivery_at,
        "delivery_attempts": job.delivery_attempts,
        "owner": job.owner,
        "scope_id": job.origin.scope_id,
        "hold": job.hold,
        "hold_expires_at": job.hold_expires_at,
        "webhook_token": job.webhook_token,
        "request_key": job.request_key,
        "status_claimed_at": job.status_claimed_at,
    }


def job_from_row(row: Row) -> Job:
    """A job from a row of the jobs table (`SELECT *`, or a row that begins with it)."""
    return Job(
        id=row["id"],
        kind=Kind(row["kind"]),
        model=row["model"],
        prompt=row["prompt"],
        origin=Origin.from_dict(json.loads(row["origin"])),
        images=tuple(ReferenceImage(**i) for i in json.loads(row["images"])),
        aspect_ratio=row["aspect_ratio"],
        quality=row["quality"],
        action=row["action"],
        parent_job_id=row["parent_job_id"],
        state=JobState(row["state"]),
        delivery=Delivery(row["delivery"]),
        upstream_task_id=row["upstream_task_id"],
        progress=row["progress"],
        result_urls=json.loads(row["result_urls"]),
        price_usd=row["price_usd"],
        refunded_usd=row["refunded_usd"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        status_message_id=row["status_message_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        submitted_at=row["submitted_at"],
        finished_at=row["finished_at"],
        delivered_at=row["delivered_at"],
        deadline_at=row["deadline_at"],
        next_poll_at=row["next_poll_at"],
        poll_count=row["poll_count"],
        error_streak=row["error_streak"],
        not_found_streak=row["not_found_streak"],
        next_delivery_at=row["next_delivery_at"],
        delivery_attempts=row["delivery_attempts"],
        owner=row["owner"],
        hold=row["hold"],
        hold_expires_at=row["hold_expires_at"],
        webhook_token=row["webhook_token"],
        request_key=row["request_key"],
        status_claimed_at=row["status_claimed_at"],
    )


def session_from_row(row: Row) -> Session:
    """A session from a row of the sessions table."""
    return Session(
        id=row["id"],
        gallery_key=row["gallery_key"],
        platform=row["platform"],
        chat_id=row["chat_id"],
        thread_id=row["thread_id"] or None,
        scope_id=row["scope_id"],
        theme=row["theme"],
        started_by=row["started_by"],
        started_by_name=row["started_by_name"],
        started_at=row["started_at"],
        ends_at=row["ends_at"],
        budget_usd=row["budget_usd"],
        per_person=row["per_person"],
        video=bool(row["video"]),
        ended_at=row["ended_at"],
        ended_by=row["ended_by"],
        card_message_id=row["card_message_id"],
        recap_at=row["recap_at"],
    )
