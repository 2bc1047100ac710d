"""Numbered schema migrations for PostgreSQL: migration N is PG_MIGRATIONS[N-1] and means
what SQLite's migration N (migrations.py) means, in PostgreSQL's types: DOUBLE PRECISION for
times and amounts, BIGINT for whole numbers, and a BIGSERIAL `seq` where SQLite's rowid
orders rows. Never edit a released one; a new one is one more entry. `migrate` applies what
the database lacks, every missing migration in one transaction that holds an advisory lock,
so replicas starting at once migrate it once."""

from __future__ import annotations

import logging

from storage.dialect import Db
from storage.pg_connection import PgConnection

__all__ = ["PG_MIGRATIONS", "migrate", "schema_version"]

log = logging.getLogger(__name__)

_MIGRATE_LOCK = "genrelay:migrate"

PG_MIGRATIONS: list[list[str]] = [
    # 1: the jobs table
    [
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            seq BIGSERIAL NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt TEXT NOT NULL,
            origin TEXT NOT NULL,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            images TEXT NOT NULL DEFAULT '[]',
            aspect_ratio TEXT,
            quality TEXT,
            action TEXT NOT NULL DEFAULT 'generate',
            parent_job_id TEXT,
            state TEXT NOT NULL,
            delivery TEXT NOT NULL DEFAULT 'none',
            upstream_task_id TEXT,
            progress BIGINT NOT NULL DEFAULT 0,
            result_urls TEXT NOT NULL DEFAULT '[]',
            price_usd DOUBLE PRECISION,
            refunded_usd DOUBLE PRECISION,
            error_code TEXT,
            error_message TEXT,
            status_message_id TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            submitted_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            delivered_at DOUBLE PRECISION,
            deadline_at DOUBLE PRECISION,
            next_poll_at DOUBLE PRECISION,
            poll_count BIGINT NOT NULL DEFAULT 0,
            error_streak BIGINT NOT NULL DEFAULT 0,
            next_delivery_at DOUBLE PRECISION,
            delivery_attempts BIGINT NOT NULL DEFAULT 0,
            owner TEXT
        )
        """,
        "CREATE INDEX jobs_due_poll ON jobs (next_poll_at) "
        "WHERE state IN ('received', 'queued', 'running')",
        "CREATE INDEX jobs_due_delivery ON jobs (next_delivery_at) WHERE delivery = 'pending'",
        "CREATE INDEX jobs_chat ON jobs (platform, chat_id, created_at)",
        "CREATE INDEX jobs_user ON jobs (platform, user_id, created_at)",
        "CREATE INDEX jobs_created ON jobs (created_at)",
    ],
    # 2: community sessions: the chat a rule applies to, jobs held for confirmation,
    # and chat settings
    [
        "ALTER TABLE jobs ADD COLUMN scope_id TEXT",
        "ALTER TABLE jobs ADD COLUMN hold TEXT",
        "ALTER TABLE jobs ADD COLUMN hold_expires_at DOUBLE PRECISION",
        "UPDATE jobs SET scope_id = chat_id",
        "CREATE INDEX jobs_scope ON jobs (platform, scope_id, created_at)",
        "CREATE INDEX jobs_state ON jobs (state)",
        """
        CREATE TABLE chat_settings (
            platform TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',
            concurrency BIGINT,
            updated_at DOUBLE PRECISION NOT NULL,
            updated_by TEXT,
            PRIMARY KEY (platform, scope_id)
        )
        """,
    ],
    # 3: webhooks: each job of a provider that calls back has its own unguessable token
    [
        "ALTER TABLE jobs ADD COLUMN webhook_token TEXT",
        "CREATE UNIQUE INDEX jobs_webhook_token ON jobs (webhook_token) "
        "WHERE webhook_token IS NOT NULL",
    ],
    # 4: a chat's slots are counted by chat and state
    ["CREATE INDEX jobs_scope_state ON jobs (platform, scope_id, state)"],
    # 5: a poll's 404s are counted on their own
    ["ALTER TABLE jobs ADD COLUMN not_found_streak BIGINT NOT NULL DEFAULT 0"],
    # 6: the inbox of platform updates, a job's request key, the status message's claim
    [
        """
        CREATE TABLE inbox (
            source TEXT NOT NULL,
            item_id BIGINT NOT NULL,
            payload TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            done_at DOUBLE PRECISION,
            PRIMARY KEY (source, item_id)
        )
        """,
        "CREATE INDEX inbox_pending ON inbox (source, item_id) WHERE done_at IS NULL",
        "ALTER TABLE jobs ADD COLUMN request_key TEXT",
        "CREATE UNIQUE INDEX jobs_request_key ON jobs (request_key) WHERE request_key IS NOT NULL",
        "ALTER TABLE jobs ADD COLUMN status_claimed_at DOUBLE PRECISION",
    ],
    # 7: creative sessions, their entries and votes
    [
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            seq BIGSERIAL NOT NULL,
            gallery_key TEXT NOT NULL UNIQUE,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            thread_id TEXT NOT NULL DEFAULT '',
            scope_id TEXT NOT NULL,
            theme TEXT NOT NULL,
            started_by TEXT NOT NULL,
            started_by_name TEXT,
            started_at DOUBLE PRECISION NOT NULL,
            ends_at DOUBLE PRECISION NOT NULL,
            budget_usd DOUBLE PRECISION,
            per_person BIGINT,
            video BIGINT NOT NULL DEFAULT 1,
            ended_at DOUBLE PRECISION,
            ended_by TEXT,
            closed_at DOUBLE PRECISION,
            card_message_id TEXT,
            card_claimed_at DOUBLE PRECISION,
            card_final BIGINT NOT NULL DEFAULT 0,
            recap_lease_until DOUBLE PRECISION,
            recap_attempts BIGINT NOT NULL DEFAULT 0,
            recap_at DOUBLE PRECISION
        )
        """,
        "CREATE UNIQUE INDEX sessions_open_place ON sessions (platform, chat_id, thread_id)"
        " WHERE ended_at IS NULL",
        "CREATE INDEX sessions_started ON sessions (started_at)",
        "CREATE INDEX sessions_unrecapped ON sessions (closed_at) WHERE recap_at IS NULL",
        """
        CREATE TABLE session_entries (
            job_id TEXT PRIMARY KEY REFERENCES jobs (id),
            session_id TEXT NOT NULL REFERENCES sessions (id),
            number BIGINT NOT NULL,
            author_id TEXT NOT NULL,
            author_name TEXT,
            remix_of TEXT REFERENCES session_entries (job_id),
            UNIQUE (session_id, number)
        )
        """,
        "CREATE INDEX session_entries_author ON session_entries (session_id, author_id)",
        """
        CREATE TABLE votes (
            job_id TEXT NOT NULL REFERENCES session_entries (job_id),
            voter_id TEXT NOT NULL,
            voted_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (job_id, voter_id)
        )
        """,
    ],
    # 8: replicas: the leases on platform connections and each process's heartbeat
    [
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            acquired_at DOUBLE PRECISION,
            expires_at DOUBLE PRECISION
        )
        """,
        """
        CREATE TABLE replicas (
            name TEXT PRIMARY KEY,
            started_at DOUBLE PRECISION,
            heartbeat_at DOUBLE PRECISION,
            info TEXT
        )
        """,
    ],
    # 9: who claimed a job's poll or delivery last
    [
        "ALTER TABLE jobs ADD COLUMN claimed_by TEXT",
        "CREATE INDEX jobs_claimed ON jobs (claimed_by)"
        " WHERE state IN ('received', 'queued', 'running') OR delivery = 'pending'",
    ],
    # 10: a status message to delete that is owed since then
    [
        "ALTER TABLE jobs ADD COLUMN status_drop_owed DOUBLE PRECISION",
        "CREATE INDEX jobs_status_drop_owed ON jobs (platform, status_drop_owed)"
        " WHERE status_drop_owed IS NOT NULL",
    ],
]


async def _version_in(db: Db) -> int:
    async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: PgConnection, *, upto: int | None = None) -> int:
    """Apply the migrations the database lacks (up to `upto`, default all); returns the
    version it is at. Under the advisory lock the version read is the latest committed,
    so a process that waited for another's migration finds nothing left to do."""
    target = len(PG_MIGRATIONS) if upto is None else upto
    async with conn.transaction() as db:
        await db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (_MIGRATE_LOCK,))
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = await _version_in(db)
        for version in range(current + 1, target + 1):
            for sql in PG_MIGRATIONS[version - 1]:
                await db.execute(sql)
            await db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
            log.info("database migrated to schema version %d", version)
    return max(current, target)


async def schema_version(db: Db) -> int:
    """The version the database is at: its latest migration applied."""
    return await _version_in(db)
