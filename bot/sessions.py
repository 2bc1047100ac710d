"""Creative sessions, as values: a group makes things around a theme for a while, votes,
and gets a recap and a gallery. The use cases live in bot/session_service.py, the store's
queries in storage/sessions.py, the gallery page in bot/gallery.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.models import Job, Kind

__all__ = [
    "MAX_RECAP_ENTRIES",
    "Entry",
    "GalleryPage",
    "Recap",
    "Session",
    "SessionFigures",
    "SessionSpec",
    "VoteOutcome",
    "VoteRefusal",
]

MAX_RECAP_ENTRIES = 10  # a Telegram album (sendMediaGroup) and a Discord message hold 10


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """What `/session start` asked for, parsed and checked."""

    theme: str
    duration_s: float
    budget_usd: float | None = None  # None: only the chat's own budget binds
    per_person: int | None = None  # entries per person; None: no session limit
    video: bool = True


@dataclass(frozen=True, slots=True)
class Session:
    """One session: a row in the store. `where` is (platform, chat_id, thread_id or "")."""

    id: str  # short, shown to people ("session k3f9")
    gallery_key: str  # unguessable: PUBLIC_BASE_URL/sessions/<gallery_key>
    platform: str
    chat_id: str
    thread_id: str | None
    scope_id: str  # the chat whose rules apply (a Discord server, else the chat)
    theme: str
    started_by: str  # user id
    started_by_name: str | None
    started_at: float
    ends_at: float
    budget_usd: float | None
    per_person: int | None
    video: bool
    ended_at: float | None = None  # set once, when it closed (timer or /session end)
    ended_by: str | None = None  # user id, or None when its time ran out
    card_message_id: str | None = None
    recap_at: float | None = None  # when its recap was posted

    @property
    def open(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True, slots=True)
class Entry:
    """A job made in a session, numbered in order (#1, #2, ...)."""

    number: int
    job: Job
    author_id: str
    author_name: str | None
    votes: int = 0
    remix_of: int | None = None  # the entry number it remixes
    remix_of_author: str | None = None
    session_id: str | None = None  # the session it belongs to

    @property
    def kind(self) -> Kind:
        return self.job.kind


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """How a session stands: for its card, /session, the recap and `genrelay sessions`."""

    session: Session
    entries: int
    people: int
    spent_usd: float
    votes: int = 0


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """A vote pressed: whether it now counts (pressing again takes it back) and the total."""

    entry: int  # entry number
    counted: bool
    votes: int


@dataclass(frozen=True, slots=True)
class VoteRefusal:
    """A vote that cannot count: `reason` is "not_entry" (the job is no session entry),
    "own" (one's own entry) or "ended" (its session is over; `theme` names it)."""

    reason: str
    theme: str | None = None


@dataclass(frozen=True, slots=True)
class Recap:
    """What the recap shows: the top entries (votes, then earliest) that have a result,
    at most MAX_RECAP_ENTRIES, and the session's figures."""

    figures: SessionFigures
    top: tuple[Entry, ...]
    gallery_url: str | None  # None without PUBLIC_BASE_URL
    # entry number -> names of its kept result files under MediaStore.results_dir (an
    # entry without a kept copy has none: post its job's result_urls instead)
    files: dict[int, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GalleryPage:
    """Everything the gallery page of a session shows. `files` maps an entry number to the
    names of its kept result files (served at /sessions/<key>/files/<name>)."""

    figures: SessionFigures
    entries: tuple[Entry, ...]  # newest first
    files: dict[int, tuple[str, ...]] = field(default_factory=dict)
