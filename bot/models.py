"""Value types of the core: where a request came from, what it asks, and the job it becomes."""

from __future__ import annotations

import dataclasses
import enum
import secrets
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIVE_STATES",
    "JOB_KEY_LENGTH",
    "TERMINAL_STATES",
    "Delivery",
    "GenerationRequest",
    "Job",
    "JobAction",
    "JobState",
    "Kind",
    "Lease",
    "Origin",
    "ReferenceImage",
    "Replica",
    "TaskUpdate",
    "new_job_id",
]


class Kind(enum.StrEnum):
    IMAGE = "image"
    VIDEO = "video"


class JobState(enum.StrEnum):
    """The job states of the architecture (a contract: names never change)."""

    RECEIVED = "received"
    SUBMITTING = "submitting"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    REJECTED = "rejected"


TERMINAL_STATES = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.REFUNDED,
        JobState.TIMED_OUT,
        JobState.INTERRUPTED,
        JobState.REJECTED,
    }
)
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


class Delivery(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"


JOB_KEY_LENGTH = 10  # base32 characters: short enough for Telegram's 64-byte callback_data


class JobAction(enum.StrEnum):
    """A button about one job, in both adapters. The value is how the button spells it in
    a Telegram callback_data ("<action>:<job id>") or a Discord custom_id
    ("genrelay:<action>:<job id>"): buttons posted long ago carry it, so it never changes."""

    REROLL = "rr"  # under a result or a failure: make it again
    ANIMATE = "an"  # under an image: a video from it
    UPSCALE = "4k"  # under a Nano Banana image: the same at 4K
    CONFIRM = "cf"  # on a video held for its asker's Confirm
    CANCEL = "cx"  # on a held video, or on a job waiting its turn
    SEND_AGAIN = "sa"  # under /history on Discord: the result again
    RESEND = "rs"  # under /history on Telegram: the same, as Telegram's buttons spell it
    ORIGINAL = "og"  # under a Telegram photo: the uncompressed file
    VOTE = "vt"  # under a session entry: vote for it (pressing again takes the vote back)
    REMIX = "rx"  # under a session entry: a new entry from its image and a new prompt


_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def new_job_id() -> str:
    """A short unguessable key, safe in a URL, a custom_id and callback_data."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(JOB_KEY_LENGTH))


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from and where its answer goes."""

    platform: str  # "telegram", "discord", "console"
    chat_id: str
    user_id: str
    user_name: str | None = None
    thread_id: str | None = None
    message_id: str | None = None  # the message to reply to
    guild_id: str | None = None
    # Platform data the sink needs later (e.g. a Discord interaction token); JSON-safe values.
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def scope_id(self) -> str:
        """The chat whose rules apply: a Discord server, else the chat itself."""
        return self.guild_id or self.chat_id

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Origin:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ReferenceImage:
    """An image the model should use.

    `ref` is either an http(s) URL that carries no secret (a Discord attachment, a URL the
    user typed) or `media:<name>`, a file we host ourselves (Telegram photos, local files).
    """

    ref: str
    mime: str = "image/jpeg"
    size: int | None = None
    filename: str | None = None

    @property
    def hosted_name(self) -> str | None:
        return self.ref.removeprefix("media:") if self.ref.startswith("media:") else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What somebody asked for, as an adapter parsed it. `model` may be an alias or None
    (the default model for the kind); the service resolves and validates it."""

    kind: Kind
    prompt: str
    origin: Origin
    model: str | None = None
    images: tuple[ReferenceImage, ...] = ()
    aspect_ratio: str | None = None
    quality: str | None = None
    action: str = "generate"  # generate, reroll, animate, upscale, remix
    parent_job_id: str | None = None
    # The chat message (or button press) it came from, e.g. "telegram:<chat>:<message>":
    # asking again with the same key finds the job it already made.
    request_key: str | None = None


@dataclass(slots=True)
class Job:
    """One request, one row: everything every step reads and writes."""

    id: str
    kind: Kind
    model: str
    prompt: str
    origin: Origin
    images: tuple[ReferenceImage, ...] = ()
    aspect_ratio: str | None = None
    quality: str | None = None
    action: str = "generate"
    parent_job_id: str | None = None
    state: JobState = JobState.RECEIVED
    delivery: Delivery = Delivery.NONE
    upstream_task_id: str | None = None
    progress: int = 0
    result_urls: list[str] = field(default_factory=list)
    price_usd: float | None = None
    refunded_usd: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    status_message_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    submitted_at: float | None = None
    finished_at: float | None = None  # when we saw the upstream end
    delivered_at: float | None = None
    deadline_at: float | None = None
    next_poll_at: float | None = None
    poll_count: int = 0
    error_streak: int = 0  # failed polls or submits in a row, of any kind: the backoff
    not_found_streak: int = 0  # 404s in a row on a poll (other errors between them count not)
    next_delivery_at: float | None = None
    delivery_attempts: int = 0
    owner: str | None = None  # the process that is submitting it ("host:pid")
    webhook_token: str | None = None  # the secret part of its webhook URL (providers that call)
    hold: str | None = None  # "confirm": waits for the asker's Confirm before it is sent
    hold_expires_at: float | None = None
    request_key: str | None = None  # see GenerationRequest.request_key; unique when set
    status_claimed_at: float | None = None  # a status message was being sent from then
    queue_position: int | None = None  # place in its chat's line; computed, never stored

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def charged_usd(self) -> float:
        """What this job costs after refunds, as far as we know. A failed job is not charged
        (the gateway refunds failures); an interrupted or timed-out one may be."""
        if self.state in (JobState.REJECTED, JobState.RECEIVED, JobState.FAILED, JobState.REFUNDED):
            return 0.0
        price = self.price_usd or 0.0
        refunded = self.refunded_usd or 0.0
        return max(price - refunded, 0.0)


@dataclass(frozen=True, slots=True)
class TaskUpdate:
    """What the gateway said about a task, in our vocabulary."""

    state: JobState
    task_id: str | None = None
    progress: int | None = None
    result_urls: tuple[str, ...] = ()
    price_usd: float | None = None
    refunded_usd: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    expires_in: int | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A named lease (a platform connection: `telegram`, `discord:shard:0`) as the store
    holds it: who holds it, since when, and until when unless renewed."""

    name: str
    holder: str
    acquired_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Replica:
    """A process that shares the store (host:pid), from its heartbeat row. `info` is what
    it said about itself (JSON: its role, `run` or `generate`)."""

    name: str
    started_at: float
    heartbeat_at: float
    info: str = "{}"
