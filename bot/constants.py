"""Every tunable number of the core, named once (the defaults of settings: bot/config.py)."""

from __future__ import annotations

from bot.models import JOB_KEY_LENGTH  # named with the job id it measures

__all__ = [
    "CARD_CLOCK_S",
    "CARD_INTERVAL_S",
    "CONSOLE",
    "DECODES_AT_ONCE",
    "DELIVERY_BACKOFF_BASE_S",
    "DELIVERY_BACKOFF_CAP_S",
    "DELIVERY_MAX_ATTEMPTS",
    "ERROR_BACKOFF_BASE_S",
    "ERROR_BACKOFF_CAP_S",
    "HEARTBEAT_S",
    "JOB_KEY_LENGTH",
    "LEASE_RENEW_S",
    "LEASE_RETRY_S",
    "LEASE_TTL_S",
    "LOOP_BACKOFF_BASE_S",
    "LOOP_BACKOFF_CAP_S",
    "MAX_CHAT_BUDGET_USD",
    "MAX_JOBS_AT_ONCE",
    "MAX_JOBS_PER_DAY",
    "MAX_PROMPT_CHARS",
    "MEDIA_NAME_BYTES",
    "MEDIA_TTL_S",
    "OWNER_STALE_S",
    "PG_CONNECT_TIMEOUT_S",
    "PG_POOL_MAX",
    "PG_POOL_MIN",
    "POLL_LEASE_S",
    "PROGRESS_MIN_INTERVAL_S",
    "RECAP_LEASE_S",
    "RECAP_SETTLE_S",
    "RECOVER_INTERVAL_S",
    "REPLICA_FORGET_S",
    "SESSION_DEFAULT_S",
    "SESSION_MAX_PER_PERSON",
    "SESSION_MAX_S",
    "SESSION_MIN_S",
    "SESSION_STEP_S",
    "STORE_BUSY_BACKOFF_S",
    "STORE_BUSY_CAP_S",
    "SUBMIT_RETRY_LIMIT",
    "TASK_NOT_FOUND_LIMIT",
    "TRACKER_BATCH_S",
    "TRACKER_IDLE_WAKE_S",
    "WEBHOOK_MIN_POLL_GAP_S",
    "WEBHOOK_TOKEN_BYTES",
]

MAX_PROMPT_CHARS = 4000

# The largest values /settings takes: far past any real chat, small enough for SQLite.
MAX_JOBS_AT_ONCE = 100  # user_jobs_at_once, chat_jobs_at_once
MAX_JOBS_PER_DAY = 10_000  # user_images_per_day, user_videos_per_day
MAX_CHAT_BUDGET_USD = 100_000  # chat_budget_usd

MEDIA_NAME_BYTES = 24  # token_urlsafe bytes for hosted reference images
MEDIA_TTL_S = 6 * 3600
DECODES_AT_ONCE = 2  # reference images decoded at once in worker threads (the cores we have)

POLL_LEASE_S = 120.0  # a claimed job is not claimed again for this long unless rescheduled
TRACKER_IDLE_WAKE_S = 1.0  # longest sleep of the tracker and notifier loops
TRACKER_BATCH_S = 0.05  # shortest sleep of the tracker: polls due meanwhile go in one claim
ERROR_BACKOFF_BASE_S = 2.0
ERROR_BACKOFF_CAP_S = 120.0
SUBMIT_RETRY_LIMIT = 5  # submits refused before anything was sent (connect errors, 429)
TASK_NOT_FOUND_LIMIT = 3  # consecutive 404s on a poll before the task counts as lost

PROGRESS_MIN_INTERVAL_S = 3.0
DELIVERY_MAX_ATTEMPTS = 8
DELIVERY_BACKOFF_BASE_S = 2.0
DELIVERY_BACKOFF_CAP_S = 300.0

WEBHOOK_TOKEN_BYTES = 24  # token_urlsafe bytes of a job's webhook URL
WEBHOOK_MIN_POLL_GAP_S = 1.0  # a webhook never makes us poll one task sooner than this again

STORE_BUSY_BACKOFF_S = 0.05  # a write locked past SQLITE_BUSY_TIMEOUT_MS tries again, doubling
STORE_BUSY_CAP_S = 2.0  # ... up to this, for as long as the lock is held
PG_POOL_MIN = 2  # PostgreSQL connections a store keeps open,
PG_POOL_MAX = 10  # ... and the most it opens at once (statements beyond wait their turn)
PG_CONNECT_TIMEOUT_S = 10.0  # a store whose server does not answer at start: a ConfigError
LOOP_BACKOFF_BASE_S = 0.5  # a tracker/notifier/sweep step that failed runs again after this,
LOOP_BACKOFF_CAP_S = 30.0  # doubling up to this
CONSOLE = "console"  # the platform of jobs made at the terminal (`genrelay generate`)

# Creative sessions (bot/session_service.py, bot/session_keeper.py)
SESSION_DEFAULT_S = 30 * 60.0  # `/session start` without --for
SESSION_MIN_S = 60.0
SESSION_MAX_S = 7 * 86400.0
SESSION_MAX_PER_PERSON = 1000  # the largest --per-person
SESSION_STEP_S = 2.0  # longest sleep of the session loop (closings, recaps, cards)
CARD_INTERVAL_S = 10.0  # a session card is updated at most this often
CARD_CLOCK_S = 60.0  # ... and for its time left alone, at most this often
RECAP_SETTLE_S = 600.0  # a recap waits this long at most for its entries to finish
RECAP_LEASE_S = 120.0  # a claimed recap is not claimed again for this long

# Replicas (bot/replicas.py, bot/leases.py): several `genrelay run` processes on one store.
HEARTBEAT_S = 2.0  # each process writes its replicas row this often
OWNER_STALE_S = 10.0  # a process on another host whose heartbeat is older is gone
REPLICA_FORGET_S = 3600.0  # a replica row this old is deleted
RECOVER_INTERVAL_S = 5.0  # `submitting` jobs of a gone process are looked for this often
LEASE_TTL_S = 10.0  # a platform connection's lease lasts this long unless renewed
LEASE_RENEW_S = 2.0  # ... and is renewed this often by its holder (dropped at TTL / 2 unrenewed)
LEASE_RETRY_S = 1.0  # a replica without it tries to take it this often
