"""The notifier: an outbox that delivers terminal jobs through the sink of their platform,
and shows progress through the same sinks, rate limited per job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx

from bot.constants import (
    DELIVERY_BACKOFF_BASE_S,
    DELIVERY_BACKOFF_CAP_S,
    POLL_LEASE_S,
    TRACKER_IDLE_WAKE_S,
)
from bot.errors import DeliveryError, MediaError, PermanentDeliveryError
from bot.faults import crash_point
from bot.loops import StepFailures
from bot.media import MediaStore
from bot.metrics import Metrics
from bot.models import Delivery, Job, JobState
from bot.ports import Clock, DeliveryNotices, DeliverySink, JobStore, ResultFile
from bot.sinks import SinkRegistry

__all__ = ["Notifier"]

log = logging.getLogger(__name__)

# How far a job got: an update that goes back (a place in line computed before the job was
# sent) is older than one already seen.
_RANK = {
    JobState.RECEIVED: 0,
    JobState.SUBMITTING: 1,
    JobState.QUEUED: 2,  # a gateway may report queued again after running
    JobState.RUNNING: 2,
}


class Notifier:
    """`run_once()` delivers what is due; `progress(job)` shows a running job's state."""

    def __init__(
        self,
        store: JobStore,
        media: MediaStore,
        http: httpx.AsyncClient,
        clock: Clock,
        *,
        max_attempts: int = 8,
        progress_interval_s: float = 3.0,
        result_max_bytes: int = 200 * 1024 * 1024,
        concurrency: int = 16,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.media = media
        self.http = http
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.max_attempts = max_attempts
        self.progress_interval_s = progress_interval_s
        self.result_max_bytes = result_max_bytes
        self.concurrency = concurrency
        self.sinks: SinkRegistry[DeliverySink] = SinkRegistry()
        self._inflight: set[asyncio.Task[None]] = set()
        self._progress_at: dict[str, float] = {}  # when each job's status was last shown
        self._progress_next: dict[str, Job] = {}  # the newest update not shown yet
        self._progress_rank: dict[str, int] = {}  # how far each job got, as seen here
        self._progress_tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._delivering: set[str] = set()  # jobs this process is delivering right now
        self._stopping = False

    def register(self, sink: DeliverySink) -> None:
        """Deliver through `sink` from now on, starting with what waited for its platform
        (claims take only platforms with a sink here: those waited, unclaimed)."""
        self.sinks.add(sink.platform, sink)
        self.wake()

    def unregister(self, platform: str, sink: DeliverySink | None = None) -> None:
        self.sinks.remove(platform, sink)

    def wake(self) -> None:
        self._wake.set()

    # -- progress ----------------------------------------------------------------------------

    def progress(self, job: Job) -> None:
        """Show the job's state soon, without blocking the caller. At most one update per job
        is on its way and one waits behind it: a newer update replaces the waiting one, so
        what is shown last is always the newest (a place in line never stays stale), at most
        every `progress_interval_s`. An update older than what was already seen (back in
        line after it was sent) is dropped."""
        if job.origin.platform not in self.sinks or job.terminal or self._stopping:
            return
        rank = _RANK.get(job.state, 2)
        if rank < self._progress_rank.get(job.id, rank):
            return
        self._progress_rank[job.id] = rank
        self._progress_next[job.id] = job
        if job.id in self._progress_tasks:
            return  # the running update picks it up
        # Not among the deliveries in flight: progress never takes a delivery's place.
        task = asyncio.create_task(self._show_progress(job.id), name=f"progress-{job.id}")
        self._progress_tasks[job.id] = task

    async def _show_progress(self, job_id: str) -> None:
        try:
            while (job := self._progress_next.pop(job_id, None)) is not None:
                wait = self._progress_at.get(job_id, float("-inf")) + self.progress_interval_s
                wait -= self.clock.now()
                if wait > 0:
                    await asyncio.sleep(wait)
                    if job_id not in self._progress_rank:
                        return  # it is being delivered
                    job = self._progress_next.pop(job_id, job)  # the newest one
                sink = self.sinks.get(job.origin.platform)
                if sink is None:
                    return
                self._progress_at[job_id] = self.clock.now()
                try:
                    message_id = await sink.progress(job)
                    if message_id and message_id != job.status_message_id:
                        await self.store.set_status_message(job.id, message_id)
                except Exception as exc:  # progress is best effort, never a reason to fail
                    log.info("job %s: progress update not shown (%s)", job_id, type(exc).__name__)
                    log.debug("job %s: why the progress update failed", job_id, exc_info=True)
        finally:
            self._progress_tasks.pop(job_id, None)

    async def _end_progress(self, job_id: str) -> None:
        """The job is being delivered: what its status showed is over. An update still on
        its way (it may wait long behind the platform's rate limit) is called off, so the
        result does not wait for it."""
        self._progress_next.pop(job_id, None)
        self._progress_at.pop(job_id, None)
        self._progress_rank.pop(job_id, None)
        task = self._progress_tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    # -- delivery ----------------------------------------------------------------------------

    def stop_intake(self) -> None:
        """Start no new delivery or progress update; deliveries in flight go on
        (`deliveries_in_flight`), what is not started waits for the next process."""
        self._stopping = True
        for task in self._progress_tasks.values():
            task.cancel()

    def deliveries_in_flight(self) -> set[asyncio.Task[None]]:
        return set(self._inflight)

    async def run_once(self) -> int:
        if self._stopping:
            return 0
        free = self.concurrency - len(self._inflight)
        jobs = await self.store.claim_due_deliveries(
            self.clock.now(), free, POLL_LEASE_S, platforms=set(self.sinks)
        )
        full = len(jobs) >= free  # more may be due: look again as soon as a slot frees
        for job in jobs:
            if job.id in self._delivering:  # its lease ran out while it is still going
                continue
            self._delivering.add(job.id)
            task = asyncio.create_task(self._deliver(job), name=f"deliver-{job.id}")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            if full:
                task.add_done_callback(lambda _: self.wake())
        return len(jobs)

    async def drain(self) -> None:
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def run(self) -> None:
        failures = StepFailures("notifier")
        try:
            while True:
                self._wake.clear()
                try:
                    await self.run_once()
                except Exception as exc:
                    await failures.failed(exc)
                    continue
                failures.ok()
                try:
                    async with asyncio.timeout(TRACKER_IDLE_WAKE_S):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            tasks = [*self._inflight, *self._progress_tasks.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def fetch_results(self, job: Job) -> list[ResultFile]:
        """Our copies of the job's results (a link-only entry where one was too large)."""
        files = []
        for index, url in enumerate(job.result_urls):
            files.append(
                await self.media.fetch_result(
                    self.http, job.id, index, url, max_bytes=self.result_max_bytes
                )
            )
        return files

    async def _deliver(self, job: Job) -> None:
        try:
            await self._deliver_once(job)
        finally:
            self._delivering.discard(job.id)

    async def _deliver_once(self, job: Job) -> None:
        sink = self.sinks.get(job.origin.platform)
        if sink is None:  # it left after the claim: the next process or sink takes it
            job.next_delivery_at = self.clock.now()
            await self.store.save(job)
            return
        await self._end_progress(job.id)
        try:
            files: Sequence[ResultFile] = []
            if job.state is JobState.SUCCEEDED:
                try:
                    files = await self.fetch_results(job)
                    crash_point("result_downloaded")
                except MediaError as exc:
                    if job.delivery_attempts + 1 < self.max_attempts:
                        raise DeliveryError(f"result download failed: {exc}") from None
                    # Last try: hand over the links we have rather than nothing.
                    files = [
                        ResultFile(u, None, None, "", u.rsplit("/", 1)[-1]) for u in job.result_urls
                    ]
            await sink.deliver(job, files)
        except DeliveryError as exc:
            await self._delivery_failed(job, exc)
            return
        except Exception as exc:
            log.exception("job %s: delivery to %s failed", job.id, job.origin.platform)
            await self._delivery_failed(job, DeliveryError(type(exc).__name__))
            return
        now = self.clock.now()
        job.delivery = Delivery.DELIVERED
        job.delivered_at = now
        job.next_delivery_at = None
        job.delivery_attempts += 1
        job.updated_at = now
        await self.store.save(job)
        crash_point("marked_delivered")
        self.metrics.delivered(job)
        log.info("job %s: delivered to %s chat %s", job.id, job.origin.platform, job.origin.chat_id)

    async def _delivery_failed(self, job: Job, exc: DeliveryError) -> None:
        now = self.clock.now()
        job.delivery_attempts += 1
        if isinstance(exc, PermanentDeliveryError) or job.delivery_attempts >= self.max_attempts:
            job.delivery = Delivery.UNDELIVERABLE
            job.next_delivery_at = None
            log.warning(
                "job %s: undeliverable after %d attempts (%s); results stay in the store",
                job.id,
                job.delivery_attempts,
                exc,
            )
        else:
            if exc.retry_after is not None:
                delay = exc.retry_after
            else:
                delay = min(
                    DELIVERY_BACKOFF_BASE_S * 2 ** (job.delivery_attempts - 1),
                    DELIVERY_BACKOFF_CAP_S,
                )
            job.next_delivery_at = now + delay
            log.info("job %s: delivery failed (%s); retry in %.1f s", job.id, exc, delay)
        job.updated_at = now
        await self.store.save(job)
        self.metrics.delivery_failed(job, retrying=job.delivery is Delivery.PENDING)
        await self._tell(job, exc)

    async def _tell(self, job: Job, exc: DeliveryError) -> None:
        """Say in the chat how the delivery stands, when its sink can (after the outcome was
        recorded: best effort, it never makes a job pending again). A pause the platform
        asked for (retry_after) is not worth a word: it is over in seconds."""
        sink = self.sinks.get(job.origin.platform)
        if not isinstance(sink, DeliveryNotices):
            return
        try:
            if job.delivery is Delivery.UNDELIVERABLE:
                await sink.undeliverable(job)
            elif exc.retry_after is None:
                await sink.delivery_delayed(job)
        except Exception:
            log.exception("job %s: the chat was not told how its delivery stands", job.id)
