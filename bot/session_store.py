"""What the core needs from the store for creative sessions (bot/sessions.py); part of
`CoreStore` (ports.py)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from bot.sessions import Entry, Session, SessionFigures, VoteOutcome, VoteRefusal

__all__ = ["SessionStore"]


class SessionStore(Protocol):
    """Creative sessions (bot/sessions.py). A place is (platform, chat_id, thread_id or
    none); at most one session is open there. Entries are recorded by `admit` itself: a job
    admitted where a session runs must fit its rules (Refusal `session_*`) and becomes its
    next entry, in the same write transaction."""

    async def create_session(self, session: Session) -> Session | None:
        """Record it, atomically, unless its place has an open session: that one is returned
        and nothing is recorded (one whose time ran out is closed first)."""
        ...

    async def open_session(
        self, platform: str, chat_id: str, thread_id: str | None, now: float
    ) -> Session | None:
        """The session running at this place at `now`."""
        ...

    async def get_session(self, session_id: str) -> Session | None: ...

    async def session_by_gallery_key(self, gallery_key: str) -> Session | None: ...

    async def list_sessions(self, limit: int = 100) -> list[SessionFigures]:
        """Newest first."""
        ...

    async def session_figures(self, session_id: str) -> SessionFigures | None:
        """Entries and people (of entries made or being made), spent (charged after
        refunds), votes."""
        ...

    async def session_entries(self, session_id: str) -> list[Entry]:
        """In number order, with votes and what each remixes; not cancelled or refused ones."""
        ...

    async def entry_for_job(self, job_id: str) -> Entry | None: ...

    async def entry_numbers(self, job_ids: Collection[str]) -> dict[str, tuple[str, int]]:
        """{job id: (its session's theme, its entry number)} for those that are entries."""
        ...

    async def toggle_vote(
        self, job_id: str, voter_id: str, now: float
    ) -> VoteOutcome | VoteRefusal:
        """Count the vote, or take it back when it counted; atomic. Refuses a job that is no
        entry, one's own entry, and an entry of a session that has ended."""
        ...

    async def close_session(
        self, session_id: str, at: float, by: str | None, *, closed_at: float | None = None
    ) -> bool:
        """Set its end (`at`, by `by` or None when its time ran out) once; `closed_at`: when
        this process saw it end (default `at`), from which its recap waits at most
        RECAP_SETTLE_S for its entries. True only for the call that ended it."""
        ...

    async def sessions_due_to_close(self, now: float) -> list[Session]: ...

    async def recaps_due(
        self, now: float, platforms: Collection[str], *, settle_s: float
    ) -> list[Session]:
        """Ended, unrecapped, unclaimed sessions of these platforms whose entries have all
        ended and been delivered, or which were closed `settle_s` ago."""
        ...

    async def claim_recap(self, session_id: str, now: float, lease_s: float) -> int:
        """The recap's lease: which try this is (1, 2, ...) for one caller only until the
        lease runs out; 0 for everyone else."""
        ...

    async def postpone_recap(self, session_id: str, until: float) -> None:
        """The recap could not be posted: it may be claimed again from `until`."""
        ...

    async def recap_done(self, session_id: str, now: float) -> None: ...

    async def sessions_with_cards(self, platforms: Collection[str]) -> list[Session]:
        """Sessions whose card may still change: open, or ended and not shown as such."""
        ...

    async def claim_card(self, session_id: str, now: float, lease_s: float) -> bool:
        """Before posting a session's first card: False when it has one or one is being
        posted."""
        ...

    async def release_card(self, session_id: str) -> None: ...

    async def set_card_message(self, session_id: str, message_id: str) -> None: ...

    async def card_final(self, session_id: str) -> None:
        """Its card shows the end: no more updates."""
        ...
