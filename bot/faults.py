"""Named crash points for the fault suite: `GENRELAY_CRASH_AT=<point>` makes this process
kill itself with SIGKILL the first time it reaches that point, as a power cut or `kill -9`
would. Unset (always, outside tests) it costs one dictionary lookup.

The points, in a job's order (some are taken at the network's edge by the fault tests'
fake servers instead, and are listed there): update_received, photo_downloading,
job_recorded, submit_in_flight, task_id_saved, polling, result_downloaded,
upload_in_flight, marked_delivered."""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "GENRELAY_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here, at once and without cleanup, when the fault suite asked for this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
