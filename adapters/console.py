"""The terminal as a delivery sink: a progress line on stderr, results saved to a folder."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bot.catalog import Catalog
from bot.messages import failure_text, progress_text
from bot.models import Job, JobState
from bot.ports import ResultFile

__all__ = ["ConsoleSink"]

log = logging.getLogger(__name__)


class ConsoleSink:
    """`DeliverySink` for jobs from the CLI. `wait(job_id)` returns once a job was delivered."""

    platform = "console"

    def __init__(
        self,
        catalog: Catalog,
        *,
        out_dir: Path | None = None,
        stream: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        self.catalog = catalog
        self.out_dir = out_dir
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.saved: dict[str, list[Path]] = {}
        self._done: dict[str, asyncio.Future[Job]] = {}
        self._last: dict[str, str] = {}

    def _future(self, job_id: str) -> asyncio.Future[Job]:
        if job_id not in self._done:
            self._done[job_id] = asyncio.get_running_loop().create_future()
        return self._done[job_id]

    async def wait(self, job_id: str) -> Job:
        return await self._future(job_id)

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.stream, flush=True)

    async def progress(self, job: Job) -> str | None:
        line = f"[{job.id}] {progress_text(job, self.catalog)}"
        if self._last.get(job.id) != line:
            self._last[job.id] = line
            self.say(line)
        return None

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        saved: list[Path] = []
        if job.state is JobState.SUCCEEDED:
            for f in files:
                if f.path is not None and self.out_dir is not None:
                    self.out_dir.mkdir(parents=True, exist_ok=True)
                    dest = self.out_dir / f.filename
                    shutil.copyfile(f.path, dest)
                    saved.append(dest)
                    self.say(f"[{job.id}] ✅ saved {dest}")
                else:
                    self.say(f"[{job.id}] ✅ {f.url}")
        else:
            self.say(f"[{job.id}] {failure_text(job, self.catalog)}")
        self.saved[job.id] = saved
        fut = self._future(job.id)
        if not fut.done():
            fut.set_result(job)
