"""The adaptive poll policy's numbers (bot/polling.py's ProgressAwarePolicy), named once;
tuned with `python -m bench.simulate`."""

from __future__ import annotations

__all__ = [
    "AIM_AFTER_S",
    "BLIND_GAP",
    "CAP_SPREAD",
    "CLOSE_FRACTION",
    "CLOSE_MAX_S",
    "CLOSE_MIN_S",
    "EARLY_POLL_FRACTION",
    "EARLY_POLL_MAX_S",
    "LATE_URL_GAP_S",
    "LATE_URL_PATIENCE_S",
    "LEARN_MIN_SAMPLES",
    "LEARN_REFRESH_S",
    "LEARN_SAMPLES",
    "LEARN_WINDOW_S",
    "LONGEST",
    "LONGEST_GAP",
    "LONGEST_GAP_MIN_S",
    "MAX_TRACKED_JOBS",
    "MIN_GAP_S",
    "OUTRUN_CHECK_S",
    "OVERDUE_BACKOFF",
    "OVERDUE_MAX_CLOSES",
    "OVERDUE_PATIENCE",
    "PROGRESS_TRUST",
    "QUEUED_GAP",
    "SPREAD",
    "SPREAD_MAX",
    "SPREAD_MIN",
    "UNCERTAINTY_END",
]

EARLY_POLL_MAX_S = 9.0  # the first poll, to catch a task that fails at once...
EARLY_POLL_FRACTION = 0.45  # ...or sooner for a model whose typical run is short
SPREAD = 0.4  # a run may end this share of the typical duration early (until learned)
SPREAD_MIN, SPREAD_MAX = 0.2, 0.7  # bounds of the learned spread
LONGEST = 1.2  # no run is expected to last longer than typical * (1 + this * spread)
PROGRESS_TRUST = 30  # from this percentage on, one reading outweighs the typical duration
UNCERTAINTY_END = 0.1  # relative error of the remaining-time estimate near 100 %
CLOSE_FRACTION = 0.075  # the gap around the predicted end, as a share of the typical run...
CLOSE_MIN_S, CLOSE_MAX_S = 1.0, 2.5  # ...within these bounds
QUEUED_GAP = 0.5  # still queued: poll again after this share of the shortest plausible run
AIM_AFTER_S = 0.1  # when the end is well known, poll this long after it
MIN_GAP_S = 0.5  # never closer than this
LONGEST_GAP = 0.5  # no gap that progress suggests is longer than this share of the typical
LONGEST_GAP_MIN_S = 20.0  # run, or than this, whichever is longer (nor than max_gap_s)
BLIND_GAP = 0.35  # while the percentage is absent or under PROGRESS_TRUST, no gap is longer
# than this share of the typical run (or LONGEST_GAP_MIN_S): a typical run that is wrong for
# this task (a new model, a slow day upstream) is found out before the task ends
CAP_SPREAD = 0.1  # a gap held to the cap is up to this share shorter, varying per job
OVERDUE_BACKOFF = 0.5  # past the predicted end, the gap grows with the time overdue...
OVERDUE_MAX_CLOSES = 1.2  # ...up to this many close gaps...
OVERDUE_PATIENCE = 0.3  # ...until it is overdue by this share of the typical run: then "fixed"
LATE_URL_GAP_S = 1.0  # progress 100 with no result URL yet: it comes within seconds...
LATE_URL_PATIENCE_S = 10.0  # ...and when it does not, poll like "fixed"
LEARN_MIN_SAMPLES = 3  # finished jobs of a model before their median replaces the default
LEARN_SAMPLES = 50  # recent finished jobs per model that count
LEARN_WINDOW_S = 3 * 86400.0  # how far back the store is asked
LEARN_REFRESH_S = 300.0  # how often the store is asked again
OUTRUN_CHECK_S = 1.0  # how often running jobs are counted against a learned median
MAX_TRACKED_JOBS = 50_000  # per-job memory is dropped oldest first beyond this
