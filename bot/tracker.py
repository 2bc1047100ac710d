"""The tracker: submits received jobs once, polls running ones, applies every transition."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping

from bot import messages
from bot.catalog import Catalog, ModelSpec
from bot.constants import (
    POLL_LEASE_S,
    SUBMIT_RETRY_LIMIT,
    TASK_NOT_FOUND_LIMIT,
    TRACKER_BATCH_S,
    TRACKER_IDLE_WAKE_S,
    WEBHOOK_MIN_POLL_GAP_S,
    WEBHOOK_TOKEN_BYTES,
)
from bot.errors import (
    AuthError,
    BadResponse,
    ConnectFailed,
    GatewayError,
    MediaError,
    RateLimited,
    TaskNotFound,
    UpstreamTimeout,
)
from bot.faults import crash_point
from bot.gateway.base import Gateway
from bot.loops import StepFailures
from bot.media import MediaStore
from bot.models import ACTIVE_STATES, Delivery, Job, JobState, TaskUpdate
from bot.owners import process_owner
from bot.polling import PollPolicy, error_backoff
from bot.ports import Clock, JobStore

__all__ = ["Tracker"]

log = logging.getLogger(__name__)

JobListener = Callable[[Job], None]


class Tracker:
    """Finds due jobs and moves them on. `run_once()` is one step; `run()` drives it."""

    def __init__(
        self,
        store: JobStore,
        gateways: Mapping[str, Gateway],
        catalog: Catalog,
        media: MediaStore,
        policy: PollPolicy,
        clock: Clock,
        *,
        concurrency: int = 64,
        sync_concurrency: int = 16,
        on_progress: JobListener | None = None,
        on_terminal: JobListener | None = None,
        on_dispatch: Callable[[list[Job]], None] | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.gateways = gateways
        self.catalog = catalog
        self.media = media
        self.policy = policy
        self.clock = clock
        self.concurrency = concurrency
        self.owner = owner or process_owner()  # written on the jobs it submits
        self._sync_sem = asyncio.Semaphore(sync_concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._submits: set[asyncio.Task[None]] = set()  # of those, the ones that submit
        self._stopping = False
        self._wake = asyncio.Event()
        self.on_progress = on_progress or (lambda job: None)
        self.on_terminal = on_terminal or (lambda job: None)
        self.on_dispatch = on_dispatch or (lambda jobs: None)
        self._busy: set[str] = set()  # jobs being handled right now
        self._again: set[str] = set()  # ... that a webhook asked about meanwhile
        self._last_poll: dict[str, float] = {}
        # When the sleeping loop looks again (-inf while it is awake: it reads the store
        # before it sleeps); a poll saved as due sooner wakes it.
        self._wake_at = float("-inf")

    # -- driving -----------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for due work now (a new job, a webhook)."""
        self._wake.set()

    def stop_intake(self) -> None:
        """Claim nothing new and call off polls in flight (they are safe to repeat); submits
        in flight go on (`submits_in_flight`): a submit cut off would cost its asker."""
        self._stopping = True
        for task in self._inflight - self._submits:
            task.cancel()

    def submits_in_flight(self) -> set[asyncio.Task[None]]:
        return set(self._submits)

    async def run_once(self) -> int:
        """Claim the jobs that are due, up to free capacity, and start handling each."""
        if self._stopping:
            return 0
        await self.policy.refresh(self.store, self.clock.now())  # asks the store only now and then
        free = self.concurrency - len(self._inflight)
        jobs = await self.store.claim_due_polls(self.clock.now(), free, POLL_LEASE_S)
        leaving_line = [j for j in jobs if j.state is JobState.RECEIVED]
        if leaving_line:
            self.on_dispatch(leaving_line)  # the rest of their chats' lines moved up
        full = len(jobs) >= free  # more may be due: look again as soon as a slot frees
        for job in jobs:
            if job.id in self._busy:  # a webhook made it due while it is being polled
                self._again.add(job.id)  # its handler saves the next poll time; then hurry
                continue
            self._busy.add(job.id)
            task = asyncio.create_task(self._handle(job), name=f"job-{job.id}")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            if full:
                task.add_done_callback(lambda _: self.wake())
            if job.state is JobState.RECEIVED:
                self._submits.add(task)
                task.add_done_callback(self._submits.discard)
        return len(jobs)

    async def drain(self) -> None:
        """Wait for every job handling that has started."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def run(self) -> None:
        """Drive `run_once` until cancelled, sleeping until the next job is due. A step that
        fails (a store busy past its patience, say) is tried again with backoff."""
        failures = StepFailures("tracker")
        try:
            while True:
                self._wake.clear()
                try:
                    started = await self.run_once()
                    if started and len(self._inflight) < self.concurrency:
                        failures.ok()
                        continue
                    due = await self.store.next_due(after=self.clock.now())
                except Exception as exc:
                    await failures.failed(exc)
                    continue
                failures.ok()
                # Due already and not claimed: waiting for a free slot in its chat (a job
                # ending wakes us). Otherwise sleep until the next one, at most the idle pace.
                delay = TRACKER_IDLE_WAKE_S if due is None else due - self.clock.now()
                delay = min(max(delay, TRACKER_BATCH_S), TRACKER_IDLE_WAKE_S)
                self._wake_at = self.clock.now() + delay
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake_at = float("-inf")
        finally:
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def _handle(self, job: Job) -> None:
        try:
            spec = self.catalog.resolve(job.model)
            if spec is None:
                await self._finish(job, JobState.FAILED, "unknown_model", messages.MODEL_GONE)
            elif job.state is JobState.RECEIVED:
                if spec.synchronous:
                    async with self._sync_sem:
                        await self._submit(job, spec)
                else:
                    await self._submit(job, spec)
            else:
                await self._poll(job, spec)
        except asyncio.CancelledError:
            raise
        except Exception:
            if job.state is JobState.SUBMITTING:
                log.exception("job %s: unexpected error while submitting", job.id)
                await self._finish(job, JobState.INTERRUPTED, "internal", None)
                return
            log.exception("job %s: unexpected error; will retry", job.id)
            job.error_streak += 1
            job.next_poll_at = self.clock.now() + error_backoff(job.error_streak)
            await self.store.save(job, expect=[job.state])
        finally:
            self._busy.discard(job.id)
            if job.next_poll_at is not None and job.next_poll_at < self._wake_at:
                self.wake()  # due before the loop would look: a poll close to its end
            if job.id in self._again:  # a webhook came while we were busy with it
                self._again.discard(job.id)
                await self.hurry(job.id)

    async def hurry(self, job_id: str) -> None:
        """Poll this job's task now (a webhook said it changed), but never twice at once and
        never sooner than WEBHOOK_MIN_POLL_GAP_S after its last poll, however many come."""
        if job_id in self._busy:
            self._again.add(job_id)
            return
        last = self._last_poll.get(job_id, float("-inf"))
        if await self.store.poll_soon(job_id, max(self.clock.now(), last + WEBHOOK_MIN_POLL_GAP_S)):
            self.wake()

    # -- submit ------------------------------------------------------------------------------

    async def _submit(self, job: Job, spec: ModelSpec) -> None:
        if self._stopping:
            return  # not sent: the next process takes it (its lease ends at recovery)
        now = self.clock.now()
        job.state = JobState.SUBMITTING
        job.owner = self.owner
        job.submitted_at = now
        job.updated_at = now
        job.next_poll_at = None
        if getattr(self.gateways.get(spec.provider), "takes_webhooks", False):
            # Stored before the call, so a webhook that beats the answer finds its job.
            job.webhook_token = job.webhook_token or secrets.token_urlsafe(WEBHOOK_TOKEN_BYTES)
        if not await self.store.save(job, expect=[JobState.RECEIVED]):
            return  # somebody else (a cancel, another replica) got there first
        gateway = self.gateways[spec.provider]
        try:
            urls = [self.media.url_for(img) for img in job.images]
        except MediaError as exc:
            await self._finish(job, JobState.FAILED, "media", messages.resend_text(str(exc)))
            return
        log.info(
            "job %s: submitting to %s model=%s images=%d",
            job.id,
            spec.provider,
            job.model,
            len(urls),
        )
        try:
            update = await gateway.submit(job, spec, urls)
        except (ConnectFailed, RateLimited) as exc:
            await self._submit_refused(job, exc)
            return
        except (UpstreamTimeout, BadResponse) as exc:
            # The request may have reached the gateway: never send it again by ourselves.
            log.warning("job %s: submit outcome unknown (%s); marking interrupted", job.id, exc)
            await self._finish(job, JobState.INTERRUPTED, exc.code, exc.detail)
            return
        except GatewayError as exc:
            if isinstance(exc, AuthError):
                log.error(
                    "the %s gateway refused our API key (%s); check the key", spec.provider, exc
                )
            else:
                log.warning("job %s: submit refused: %s", job.id, exc)
            await self._finish(job, JobState.FAILED, exc.code, exc.detail)
            return
        now = self.clock.now()
        job.upstream_task_id = update.task_id
        job.deadline_at = now + spec.deadline_s
        job.error_streak = 0
        job.price_usd = update.price_usd if update.price_usd is not None else spec.price_usd
        log.info("job %s: submitted, task %s, state %s", job.id, update.task_id, update.state)
        if update.state in ACTIVE_STATES and not update.task_id:
            await self._finish(job, JobState.INTERRUPTED, "bad_response", messages.NO_TASK_ID)
            return
        await self._apply(job, spec, update, expect=JobState.SUBMITTING, first=True)
        crash_point("task_id_saved")

    async def _submit_refused(self, job: Job, exc: GatewayError) -> None:
        """Nothing reached the gateway (no connection, or a 429): safe to try again later."""
        job.error_streak += 1
        if job.error_streak > SUBMIT_RETRY_LIMIT:
            await self._finish(job, JobState.FAILED, exc.code, exc.detail)
            return
        delay = exc.retry_after if exc.retry_after is not None else error_backoff(job.error_streak)
        log.warning("job %s: submit not sent (%s); trying again in %.1f s", job.id, exc, delay)
        job.state = JobState.RECEIVED
        job.submitted_at = None
        job.next_poll_at = self.clock.now() + delay
        job.updated_at = self.clock.now()
        await self.store.save(job, expect=[JobState.SUBMITTING])

    # -- poll --------------------------------------------------------------------------------

    async def _poll(self, job: Job, spec: ModelSpec) -> None:
        state = job.state
        self._last_poll[job.id] = self.clock.now()
        try:
            update = await self.gateways[spec.provider].poll(job, spec)
        except GatewayError as exc:
            await self._poll_failed(job, spec, exc)
            return
        job.poll_count += 1
        job.error_streak = 0
        job.not_found_streak = 0
        await self._apply(job, spec, update, expect=state)

    async def _poll_failed(self, job: Job, spec: ModelSpec, exc: GatewayError) -> None:
        now = self.clock.now()
        state = job.state
        job.poll_count += 1
        job.error_streak += 1  # any kind: sets the backoff
        if isinstance(exc, TaskNotFound):  # only 404s count toward "lost"
            job.not_found_streak += 1
        if isinstance(exc, TaskNotFound) and job.not_found_streak >= TASK_NOT_FOUND_LIMIT:
            await self._finish(job, JobState.FAILED, "task_lost", exc.detail, expect=state)
            return
        if job.deadline_at is not None and now >= job.deadline_at:
            await self._finish(job, JobState.TIMED_OUT, "deadline", None, expect=state)
            return
        if isinstance(exc, AuthError):
            log.error("the %s gateway refused our API key (%s); check the key", spec.provider, exc)
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            delay = exc.retry_after
        else:
            delay = error_backoff(job.error_streak)
        log.warning("job %s: poll failed (%s); next try in %.1f s", job.id, exc, delay)
        job.next_poll_at = now + delay
        job.updated_at = now
        await self.store.save(job, expect=[state])

    # -- transitions -------------------------------------------------------------------------

    async def _apply(
        self,
        job: Job,
        spec: ModelSpec,
        update: TaskUpdate,
        *,
        expect: JobState,
        first: bool = False,
    ) -> None:
        now = self.clock.now()
        if update.price_usd is not None:
            job.price_usd = update.price_usd
        if update.refunded_usd is not None:
            job.refunded_usd = update.refunded_usd
        if update.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.REFUNDED):
            job.result_urls = list(update.result_urls)
            if update.progress is not None:
                job.progress = update.progress
            code = update.error_code or (None if update.state is JobState.SUCCEEDED else "upstream")
            await self._finish(job, update.state, code, update.error_message, expect=expect)
            return
        if job.deadline_at is not None and now >= job.deadline_at:
            await self._finish(job, JobState.TIMED_OUT, "deadline", None, expect=expect)
            return
        changed = update.state is not job.state or (
            update.progress is not None and update.progress != job.progress
        )
        job.state = update.state
        if update.progress is not None:
            job.progress = update.progress
        job.updated_at = now
        delay = (
            self.policy.first_delay(job, spec) if first else self.policy.next_delay(job, spec, now)
        )
        job.next_poll_at = now + delay
        if await self.store.save(job, expect=[expect]) and (changed or first):
            self.on_progress(job)

    async def _finish(
        self,
        job: Job,
        state: JobState,
        code: str | None,
        message: str | None,
        *,
        expect: JobState | None = None,
    ) -> None:
        now = self.clock.now()
        prior = expect or job.state
        job.state = state
        job.error_code = code if state is not JobState.SUCCEEDED else None
        job.error_message = message if state is not JobState.SUCCEEDED else None
        if state is JobState.REFUNDED and job.refunded_usd is None:
            job.refunded_usd = job.price_usd
        if state is JobState.SUCCEEDED:
            job.progress = 100
        job.finished_at = now
        job.updated_at = now
        job.next_poll_at = None
        job.delivery = Delivery.PENDING
        job.next_delivery_at = now
        self._last_poll.pop(job.id, None)
        if await self.store.save(job, expect=[prior]):
            log.info(
                "job %s: %s (model=%s task=%s%s)",
                job.id,
                state.value,
                job.model,
                job.upstream_task_id,
                f" code={code}" if code and state is not JobState.SUCCEEDED else "",
            )
            self.policy.job_ended(job)  # learns the duration, forgets the job
            self.on_terminal(job)
