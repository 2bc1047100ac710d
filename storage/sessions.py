"""Queries for creative sessions: one open session per place, entries admitted with their job
in one write transaction, atomic votes, closing once, and a leased recap. Mixed into both
job stores (see dialect.py); a write that reads before it writes first takes the lock of the
place, session or entry it decides on (`_lock`, which only PostgreSQL needs)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from bot.community import Refusal
from bot.models import TERMINAL_STATES, Job, Kind
from bot.sessions import Entry, Session, SessionFigures, VoteOutcome, VoteRefusal
from storage.community import _CHARGED
from storage.dialect import Db, Dialect, Row
from storage.rows import session_from_row

__all__ = ["SessionQueries"]

# Entries that count (for the figures and entries per person): the ones that were made or are
# being made. A cancelled or refused one, or one that failed, made nothing.
_COUNTED = "j.state NOT IN ('rejected', 'failed', 'refunded', 'timed_out', 'interrupted')"
_TERMINAL = tuple(sorted(s.value for s in TERMINAL_STATES))
_IN_BATCH = 500  # job ids asked about in one query
# An entry with its job, its votes and what it remixes (`e` the entry, `j` its job).
_ENTRY_SQL = (
    "SELECT j.*, e.session_id AS e_session, e.number AS e_number, e.author_id AS e_author,"
    " e.author_name AS e_author_name, p.number AS e_remix_number,"
    " COALESCE(p.author_name, p.author_id) AS e_remix_author,"
    " (SELECT COUNT(*) FROM votes AS v WHERE v.job_id = e.job_id) AS e_votes"
    " FROM session_entries AS e JOIN jobs AS j ON j.id = e.job_id"
    " LEFT JOIN session_entries AS p ON p.job_id = e.remix_of"
)


class SessionQueries:
    if TYPE_CHECKING:

        @property
        def db(self) -> Db: ...

        def transaction(self) -> AbstractAsyncContextManager[Db]: ...

        dialect: Dialect

        async def _lock(self, db: Db, key: str) -> None: ...

        def _job(self, row: Row) -> Job: ...

        async def _scalar(self, db: Db, sql: str, params: tuple[Any, ...]) -> float: ...

    # -- sessions ----------------------------------------------------------------------------

    async def create_session(self, session: Session) -> Session | None:
        """Record `session` unless its place has an open one: that one is returned (and
        nothing recorded). One whose time ran out there is closed first (ended at its end)."""
        place = (session.platform, session.chat_id, session.thread_id or "")
        async with self.transaction() as db:
            await self._lock(db, "place:{}:{}:{}".format(*place))
            await db.execute(
                "UPDATE sessions SET ended_at = ends_at, closed_at = ? WHERE platform = ?"
                " AND chat_id = ? AND thread_id = ? AND ended_at IS NULL AND ends_at <= ?",
                (session.started_at, *place, session.started_at),
            )
            open_now = await self._open_at(db, place, None)
            if open_now is not None:
                return open_now
            await db.execute(
                "INSERT INTO sessions (id, gallery_key, platform, chat_id, thread_id, scope_id,"
                " theme, started_by, started_by_name, started_at, ends_at, budget_usd,"
                " per_person, video) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.gallery_key,
                    *place,
                    session.scope_id,
                    session.theme,
                    session.started_by,
                    session.started_by_name,
                    session.started_at,
                    session.ends_at,
                    session.budget_usd,
                    session.per_person,
                    int(session.video),
                ),
            )
        return None

    async def _open_at(
        self, db: Db, place: tuple[str, str, str], now: float | None
    ) -> Session | None:
        """The place's open session; with `now`, only if its time has not run out."""
        sql = (
            "SELECT * FROM sessions WHERE platform = ? AND chat_id = ? AND thread_id = ?"
            " AND ended_at IS NULL"
        )
        params: tuple[Any, ...] = place
        if now is not None:
            sql += " AND ends_at > ?"
            params += (now,)
        async with db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return session_from_row(row) if row else None

    async def open_session(
        self, platform: str, chat_id: str, thread_id: str | None, now: float
    ) -> Session | None:
        """The session running at this place now, if any."""
        return await self._open_at(self.db, (platform, chat_id, thread_id or ""), now)

    async def get_session(self, session_id: str) -> Session | None:
        return await self._one("SELECT * FROM sessions WHERE id = ?", (session_id,))

    async def session_by_gallery_key(self, gallery_key: str) -> Session | None:
        return await self._one("SELECT * FROM sessions WHERE gallery_key = ?", (gallery_key,))

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Session | None:
        async with self.db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return session_from_row(row) if row else None

    async def _many(self, sql: str, params: Sequence[Any]) -> list[Session]:
        async with self.db.execute(sql, params) as cur:
            return [session_from_row(r) for r in await cur.fetchall()]

    async def list_sessions(self, limit: int = 100) -> list[SessionFigures]:
        """Sessions with their figures, newest first."""
        sessions = await self._many(
            f"SELECT * FROM sessions ORDER BY started_at DESC, {self.dialect.seq} DESC LIMIT ?",
            (limit,),
        )
        return [await self._figures(s) for s in sessions]

    async def session_figures(self, session_id: str) -> SessionFigures | None:
        session = await self.get_session(session_id)
        return None if session is None else await self._figures(session)

    async def _figures(self, session: Session) -> SessionFigures:
        async with self.db.execute(
            f"SELECT SUM(CASE WHEN {_COUNTED} THEN 1 ELSE 0 END),"
            f" COUNT(DISTINCT CASE WHEN {_COUNTED} THEN e.author_id END), SUM({_CHARGED})"
            " FROM session_entries AS e JOIN jobs AS j ON j.id = e.job_id"
            " WHERE e.session_id = ?",
            (session.id,),
        ) as cur:
            row = await cur.fetchone()
        votes = await self._scalar(
            self.db,
            "SELECT COUNT(*) FROM votes AS v JOIN session_entries AS e ON e.job_id = v.job_id"
            " WHERE e.session_id = ?",
            (session.id,),
        )
        return SessionFigures(
            session=session,
            entries=int(row[0] or 0) if row else 0,
            people=int(row[1] or 0) if row else 0,
            spent_usd=float(row[2] or 0) if row else 0.0,
            votes=int(votes),
        )

    # -- entries -----------------------------------------------------------------------------

    async def _session_rules(self, db: Db, job: Job) -> tuple[Session | None, Refusal | None]:
        """Inside admission's write transaction: the session `job` would be an entry of (the
        one running at its place), and the session rule it breaks, if any. Takes the
        session's lock: its budget, entries per person and numbers are decided under it."""
        o = job.origin
        place = (o.platform, o.chat_id, o.thread_id or "")
        session = await self._open_at(db, place, job.created_at)
        if session is None:
            return None, None
        await self._lock(db, f"session:{session.id}")
        if job.kind is Kind.VIDEO and not session.video:
            return session, Refusal("session_video", 0, 0)
        if session.per_person is not None:
            used = await self._scalar(
                db,
                "SELECT COUNT(*) FROM session_entries AS e JOIN jobs AS j ON j.id = e.job_id"
                f" WHERE e.session_id = ? AND e.author_id = ? AND {_COUNTED}",
                (session.id, o.user_id),
            )
            if used >= session.per_person:
                return session, Refusal("session_per_person", used, session.per_person)
        if session.budget_usd is not None:
            spent = await self._scalar(
                db,
                f"SELECT SUM({_CHARGED}) FROM session_entries AS e JOIN jobs AS j"
                " ON j.id = e.job_id WHERE e.session_id = ?",
                (session.id,),
            )
            if spent + (job.price_usd or 0.0) > session.budget_usd + 1e-9:
                return session, Refusal("session_budget", spent, session.budget_usd)
        return session, None

    async def _add_entry(self, db: Db, job: Job, session: Session) -> None:
        """Inside admission's write transaction, after `job` was inserted: its entry, with
        the session's next number, and the entry it remixes when its parent is one."""
        number = await self._scalar(
            db,
            "SELECT COALESCE(MAX(number), 0) + 1 FROM session_entries WHERE session_id = ?",
            (session.id,),
        )
        remix_of = None
        if job.parent_job_id is not None and job.action == "remix":
            async with db.execute(
                "SELECT job_id FROM session_entries WHERE job_id = ? AND session_id = ?",
                (job.parent_job_id, session.id),
            ) as cur:
                remix_of = job.parent_job_id if await cur.fetchone() else None
        await db.execute(
            "INSERT INTO session_entries (job_id, session_id, number, author_id, author_name,"
            " remix_of) VALUES (?, ?, ?, ?, ?, ?)",
            (job.id, session.id, int(number), job.origin.user_id, job.origin.user_name, remix_of),
        )

    def _entry(self, row: Row) -> Entry:
        return Entry(
            number=row["e_number"],
            job=self._job(row),
            author_id=row["e_author"],
            author_name=row["e_author_name"],
            votes=row["e_votes"],
            remix_of=row["e_remix_number"],
            remix_of_author=row["e_remix_author"],
            session_id=row["e_session"],
        )

    async def session_entries(self, session_id: str) -> list[Entry]:
        """Every entry of the session but cancelled or refused ones, in number order."""
        async with self.db.execute(
            f"{_ENTRY_SQL} WHERE e.session_id = ? AND j.state != 'rejected' ORDER BY e.number",
            (session_id,),
        ) as cur:
            return [self._entry(r) for r in await cur.fetchall()]

    async def entry_for_job(self, job_id: str) -> Entry | None:
        async with self.db.execute(f"{_ENTRY_SQL} WHERE e.job_id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return self._entry(row) if row else None

    async def entry_numbers(self, job_ids: Collection[str]) -> dict[str, tuple[str, int]]:
        """For those of `job_ids` that are entries: (their session's theme, their number)."""
        ids, out = list(job_ids), {}
        for start in range(0, len(ids), _IN_BATCH):
            batch = ids[start : start + _IN_BATCH]
            async with self.db.execute(
                "SELECT e.job_id, s.theme, e.number FROM session_entries AS e"
                " JOIN sessions AS s ON s.id = e.session_id"
                f" WHERE e.job_id IN ({','.join('?' * len(batch))})",
                batch,
            ) as cur:
                out.update({r[0]: (r[1], int(r[2])) for r in await cur.fetchall()})
        return out

    # -- votes -------------------------------------------------------------------------------

    async def toggle_vote(
        self, job_id: str, voter_id: str, now: float
    ) -> VoteOutcome | VoteRefusal:
        """The voter's vote for the entry of `job_id` counts, or, when it did, is taken back:
        in one write transaction, holding the entry's lock, so votes pressed at once are
        each counted once."""
        async with self.transaction() as db:
            await self._lock(db, f"entry:{job_id}")
            async with db.execute(
                "SELECT e.number, e.author_id, s.theme, s.ended_at, s.ends_at"
                " FROM session_entries AS e JOIN sessions AS s ON s.id = e.session_id"
                " WHERE e.job_id = ?",
                (job_id,),
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return VoteRefusal("not_entry")
            number, author, theme, ended_at, ends_at = row
            if ended_at is not None or ends_at <= now:
                return VoteRefusal("ended", theme)
            if author == voter_id:
                return VoteRefusal("own", theme)
            cur = await db.execute(
                "DELETE FROM votes WHERE job_id = ? AND voter_id = ?", (job_id, voter_id)
            )
            counted = cur.rowcount == 0
            if counted:
                await db.execute(
                    "INSERT INTO votes (job_id, voter_id, voted_at) VALUES (?, ?, ?)",
                    (job_id, voter_id, now),
                )
            votes = await self._scalar(db, "SELECT COUNT(*) FROM votes WHERE job_id = ?", (job_id,))
        return VoteOutcome(entry=int(number), counted=counted, votes=int(votes))

    # -- ending, recap and card --------------------------------------------------------------

    async def close_session(
        self, session_id: str, at: float, by: str | None, *, closed_at: float | None = None
    ) -> bool:
        """End the session at `at` (by `by`, or None: its time ran out), seen at `closed_at`
        (default: `at`). True only for the call that ended it."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE sessions SET ended_at = ?, ended_by = ?, closed_at = ?"
                " WHERE id = ? AND ended_at IS NULL",
                (at, by, at if closed_at is None else closed_at, session_id),
            )
            return cur.rowcount == 1

    async def sessions_due_to_close(self, now: float) -> list[Session]:
        """Open sessions whose time has run out."""
        return await self._many(
            "SELECT * FROM sessions WHERE ended_at IS NULL AND ends_at <= ? ORDER BY ends_at",
            (now,),
        )

    async def recaps_due(
        self, now: float, platforms: Collection[str], *, settle_s: float
    ) -> list[Session]:
        """Ended sessions of these platforms without a recap, not claimed by anyone now,
        whose entries have all ended and been delivered, or which were closed `settle_s`
        ago."""
        names = sorted(platforms)
        if not names:
            return []
        return await self._many(
            "SELECT * FROM sessions AS s WHERE s.recap_at IS NULL AND s.ended_at IS NOT NULL"
            f" AND s.platform IN ({','.join('?' * len(names))})"
            " AND (s.recap_lease_until IS NULL OR s.recap_lease_until <= ?)"
            " AND (s.closed_at <= ? OR NOT EXISTS (SELECT 1 FROM session_entries AS e"
            " JOIN jobs AS j ON j.id = e.job_id WHERE e.session_id = s.id"
            f" AND (j.state NOT IN ({','.join('?' * len(_TERMINAL))}) OR j.delivery = 'pending')))"
            " ORDER BY s.closed_at",
            (*names, now, now - settle_s, *_TERMINAL),
        )

    async def claim_recap(self, session_id: str, now: float, lease_s: float) -> int:
        """Take the recap's lease: which try this is (1, 2, ...) for one caller only until
        the lease runs out; 0 for everyone else."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE sessions SET recap_lease_until = ?, recap_attempts = recap_attempts + 1"
                " WHERE id = ? AND ended_at IS NOT NULL AND recap_at IS NULL"
                " AND (recap_lease_until IS NULL OR recap_lease_until <= ?)"
                " RETURNING recap_attempts",
                (now + lease_s, session_id, now),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def postpone_recap(self, session_id: str, until: float) -> None:
        """The recap could not be posted: try again from `until`."""
        async with self.transaction() as db:
            await db.execute(
                "UPDATE sessions SET recap_lease_until = ? WHERE id = ? AND recap_at IS NULL",
                (until, session_id),
            )

    async def recap_done(self, session_id: str, now: float) -> None:
        """The recap was posted (or given up on): never again."""
        async with self.transaction() as db:
            await db.execute(
                "UPDATE sessions SET recap_at = ?, recap_lease_until = NULL WHERE id = ?",
                (now, session_id),
            )

    async def sessions_with_cards(self, platforms: Collection[str]) -> list[Session]:
        """Sessions of these platforms whose card still needs showing: open ones, and ended
        ones whose card does not show the end yet."""
        names = sorted(platforms)
        if not names:
            return []
        return await self._many(
            "SELECT * FROM sessions WHERE card_final = 0"
            f" AND platform IN ({','.join('?' * len(names))}) ORDER BY started_at",
            names,
        )

    async def claim_card(self, session_id: str, now: float, lease_s: float) -> bool:
        """Before a session's first card is posted: False when it has one, or one is being
        posted (so two processes never post two)."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE sessions SET card_claimed_at = ? WHERE id = ? AND card_message_id IS NULL"
                " AND (card_claimed_at IS NULL OR card_claimed_at <= ?)",
                (now, session_id, now - lease_s),
            )
            return cur.rowcount == 1

    async def release_card(self, session_id: str) -> None:
        """The first card was surely not posted: another may be."""
        async with self.transaction() as db:
            await db.execute(
                "UPDATE sessions SET card_claimed_at = NULL WHERE id = ?"
                " AND card_message_id IS NULL",
                (session_id,),
            )

    async def set_card_message(self, session_id: str, message_id: str) -> None:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE sessions SET card_message_id = ? WHERE id = ?", (message_id, session_id)
            )

    async def card_final(self, session_id: str) -> None:
        """The card shows the session's end: it needs no more updates."""
        async with self.transaction() as db:
            await db.execute("UPDATE sessions SET card_final = 1 WHERE id = ?", (session_id,))
