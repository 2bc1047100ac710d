"""Every tunable number of the core, named once."""

from __future__ import annotations

__all__ = [
    "ADAPTER_RETRY_FIRST_S",
    "ADAPTER_RETRY_MAX_S",
    "CONSOLE",
    "DECODES_AT_ONCE",
    "DELIVERY_BACKOFF_BASE_S",
    "DELIVERY_BACKOFF_CAP_S",
    "DELIVERY_MAX_ATTEMPTS",
    "ERROR_BACKOFF_BASE_S",
    "ERROR_BACKOFF_CAP_S",
    "JOB_KEY_LENGTH",
    "LOOP_BACKOFF_BASE_S",
    "LOOP_BACKOFF_CAP_S",
    "MAX_CHAT_BUDGET_USD",
    "MAX_JOBS_AT_ONCE",
    "MAX_JOBS_PER_DAY",
    "MAX_PROMPT_CHARS",
    "MAX_REFERENCE_BYTES",
    "MEDIA_NAME_BYTES",
    "MEDIA_TTL_S",
    "POLL_LEASE_S",
    "PROGRESS_MIN_INTERVAL_S",
    "RESULT_MAX_BYTES",
    "SHUTDOWN_GRACE_S",
    "SQLITE_BUSY_TIMEOUT_MS",
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
MAX_REFERENCE_BYTES = 20 * 1024 * 1024
RESULT_MAX_BYTES = 200 * 1024 * 1024

# The largest values /settings takes: far past any real chat, small enough for SQLite.
MAX_JOBS_AT_ONCE = 100  # user_jobs_at_once, chat_jobs_at_once
MAX_JOBS_PER_DAY = 10_000  # user_images_per_day, user_videos_per_day
MAX_CHAT_BUDGET_USD = 100_000  # chat_budget_usd

JOB_KEY_LENGTH = 10  # base32 characters: short enough for Telegram's 64-byte callback_data
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

ADAPTER_RETRY_FIRST_S = 1.0  # a chat platform that did not answer at start: first wait
ADAPTER_RETRY_MAX_S = 60.0  # ... doubling up to this
SQLITE_BUSY_TIMEOUT_MS = 5000  # how long one SQLite statement waits for another process's lock
STORE_BUSY_BACKOFF_S = 0.05  # then the store tries again after this, doubling ...
STORE_BUSY_CAP_S = 2.0  # ... up to this, for as long as the lock is held
LOOP_BACKOFF_BASE_S = 0.5  # a tracker/notifier/sweep step that failed runs again after this,
LOOP_BACKOFF_CAP_S = 30.0  # doubling up to this
CONSOLE = "console"  # the platform of jobs made at the terminal (`genrelay generate`)
SHUTDOWN_GRACE_S = 30.0  # on SIGTERM, how long submits and deliveries in flight may finish
