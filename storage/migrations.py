"""Numbered schema migrations: migration N is MIGRATIONS[N-1]. Never edit a released one.
`migrate` applies what a file lacks when the store opens it."""

from __future__ import annotations

import logging

import aiosqlite

from storage.connection import SqliteConnection

__all__ = ["MIGRATIONS", "migrate", "schema_version"]

log = logging.getLogger(__name__)

MIGRATIONS: list[list[str]] = [
    # 1: the jobs table
    [
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
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
            progress INTEGER NOT NULL DEFAULT 0,
            result_urls TEXT NOT NULL DEFAULT '[]',
            price_usd REAL,
            refunded_usd REAL,
            error_code TEXT,
            error_message TEXT,
            status_message_id TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            submitted_at REAL,
            finished_at REAL,
            delivered_at REAL,
            deadline_at REAL,
            next_poll_at REAL,
            poll_count INTEGER NOT NULL DEFAULT 0,
            error_streak INTEGER NOT NULL DEFAULT 0,
            next_delivery_at REAL,
            delivery_attempts INTEGER NOT NULL DEFAULT 0,
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
        "ALTER TABLE jobs ADD COLUMN hold_expires_at REAL",
        "UPDATE jobs SET scope_id = chat_id",
        "CREATE INDEX jobs_scope ON jobs (platform, scope_id, created_at)",
        "CREATE INDEX jobs_state ON jobs (state)",
        """
        CREATE TABLE chat_settings (
            platform TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',
            concurrency INTEGER,
            updated_at REAL NOT NULL,
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
    # 4: a chat's slots are counted on every submit and claim: by chat and state, so the
    # count reads that chat's live jobs, not its whole history or every chat's
    ["CREATE INDEX jobs_scope_state ON jobs (platform, scope_id, state)"],
    # 5: a poll's 404s are counted on their own: connection errors between them neither
    # grow nor reset the streak that decides a task is lost
    ["ALTER TABLE jobs ADD COLUMN not_found_streak INTEGER NOT NULL DEFAULT 0"],
    # 6: nothing a chat sends is lost or done twice. `inbox` holds each platform update
    # (its raw JSON) from the moment it is fetched, before the platform is told we have it,
    # until its handling finished; a restart replays the rows not done. `request_key` names
    # the message a job came from, so a replayed or twice-delivered one finds its job.
    # `status_claimed_at`: a status message is being sent (set before the send), so a
    # process that died before storing its id never posts a second one.
    [
        """
        CREATE TABLE inbox (
            source TEXT NOT NULL,
            item_id INTEGER NOT NULL,
            payload TEXT NOT NULL,
            received_at REAL NOT NULL,
            done_at REAL,
            PRIMARY KEY (source, item_id)
        )
        """,
        "CREATE INDEX inbox_pending ON inbox (source, item_id) WHERE done_at IS NULL",
        "ALTER TABLE jobs ADD COLUMN request_key TEXT",
        "CREATE UNIQUE INDEX jobs_request_key ON jobs (request_key) WHERE request_key IS NOT NULL",
        "ALTER TABLE jobs ADD COLUMN status_claimed_at REAL",
    ],
    # 7: creative sessions. A session belongs to a place (platform, chat, thread or ''): at
    # most one is open there at a time. Each job made in it while it runs is an entry,
    # numbered in the session; each person votes at most once per entry. The recap is
    # claimed (a lease) before it is posted, so it is posted once. `ended_at` is when the
    # session ended (its end time, for one that ran out while no process was up);
    # `closed_at` when a process saw it end (the recap waits for entries from then).
    [
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            gallery_key TEXT NOT NULL UNIQUE,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            thread_id TEXT NOT NULL DEFAULT '',
            scope_id TEXT NOT NULL,
            theme TEXT NOT NULL,
            started_by TEXT NOT NULL,
            started_by_name TEXT,
            started_at REAL NOT NULL,
            ends_at REAL NOT NULL,
            budget_usd REAL,
            per_person INTEGER,
            video INTEGER NOT NULL DEFAULT 1,
            ended_at REAL,
            ended_by TEXT,
            closed_at REAL,
            card_message_id TEXT,
            card_claimed_at REAL,
            card_final INTEGER NOT NULL DEFAULT 0,
            recap_lease_until REAL,
            recap_attempts INTEGER NOT NULL DEFAULT 0,
            recap_at REAL
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
            number INTEGER NOT NULL,
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
            voted_at REAL NOT NULL,
            PRIMARY KEY (job_id, voter_id)
        )
        """,
    ],
    # 8: replicas. `leases`: each platform connection (`telegram`, `discord:shard:<i>`) is
    # held by one process at a time, until `expires_at` unless renewed. `replicas`: each
    # process's heartbeat, so another host can tell whether it still runs.
    [
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            acquired_at REAL,
            expires_at REAL
        )
        """,
        """
        CREATE TABLE replicas (
            name TEXT PRIMARY KEY,
            started_at REAL,
            heartbeat_at REAL,
            info TEXT
        )
        """,
    ],
    # 9: who claimed a job's poll or delivery last, so the claims of a process that died
    # are due again at once (not when their lease ends).
    [
        "ALTER TABLE jobs ADD COLUMN claimed_by TEXT",
        "CREATE INDEX jobs_claimed ON jobs (claimed_by)"
        " WHERE state IN ('received', 'queued', 'running') OR delivery = 'pending'",
    ],
    # 10: a status message to delete that is owed since then (its delete waited for the
    # chat's budget when the result went out): whoever holds the platform next deletes it.
    [
        "ALTER TABLE jobs ADD COLUMN status_drop_owed REAL",
        "CREATE INDEX jobs_status_drop_owed ON jobs (platform, status_drop_owed)"
        " WHERE status_drop_owed IS NOT NULL",
    ],
]


async def migrate(conn: SqliteConnection) -> None:
    """Apply what this file lacks. The version is read inside each write transaction, so
    processes opening one new file at once apply each migration once."""

    async def version_in(db: aiosqlite.Connection) -> int:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
        async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as c:
            row = await c.fetchone()
        return int(row[0]) if row else 0

    async with conn.transaction() as db:
        current = await version_in(db)
    for version, statements in enumerate(MIGRATIONS, start=1):
        if version <= current:
            continue
        async with conn.transaction() as db:
            if await version_in(db) >= version:
                continue  # another process applied it meanwhile
            for sql in statements:
                await db.execute(sql)
            await db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
        log.info("database migrated to schema version %d", version)


async def schema_version(db: aiosqlite.Connection) -> int:
    """The version the file is at: its latest migration applied."""
    async with db.execute("SELECT MAX(version) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0
