"""Composes the core: HTTP client, gateways, tracker, notifier, service, on the store and
catalog the composition root (bot/main/wiring.py) hands it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack
from types import TracebackType

import httpx

from bot.catalog import Catalog
from bot.config import Settings
from bot.constants import RECOVER_INTERVAL_S
from bot.gateway.aa import AAGateway
from bot.gateway.aggregator import PROVIDER as AGGREGATOR
from bot.gateway.aggregator import AggregatorGateway
from bot.gateway.base import Gateway
from bot.loops import StepFailures
from bot.media import MediaStore
from bot.metrics import Metrics
from bot.models import Job
from bot.notifier import Notifier
from bot.owners import Owners
from bot.polling import PollPolicy, make_policy
from bot.ports import Clock, CoreStore, SessionSink, SystemClock
from bot.replicas import Heartbeat
from bot.service import Service
from bot.session_keeper import SessionKeeper
from bot.session_service import SessionService
from bot.tracker import Tracker
from bot.webhooks import WebhookReceiver, webhook_base

__all__ = ["Core"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 5.0
PRUNE_INTERVAL_S = 3600.0  # how often kept files of old sessions' galleries are looked at


class Core:
    """Everything platform-neutral, built from Settings on a store and a catalog it is given
    (`bot.main.wiring.open_core` builds all three). An async context manager: entering opens
    the store and HTTP client and recovers jobs a past process left."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: CoreStore,
        catalog: Catalog,
        clock: Clock | None = None,
        policy: PollPolicy | None = None,
        gateways: dict[str, Gateway] | None = None,
        own_jobs_only: bool = False,
        owners: Owners | None = None,
    ) -> None:
        """`store`: not yet open (entering opens it). `own_jobs_only`: a `genrelay generate`
        process, which follows and delivers only the jobs it made (the rest belong to
        `genrelay run`, or to another `generate`); its store claims only those. `owners`:
        this process's name and which others still run (the store's `owner_alive` too)."""
        self.settings = settings
        self.store = store
        self.own_jobs_only = own_jobs_only
        self.clock = clock or SystemClock()
        self.owners = owners or Owners(clock=self.clock.now)
        role = "generate" if own_jobs_only else "run"
        self.heartbeat = Heartbeat(store, self.owners, self.clock, role=role)
        self._next_recover = 0.0  # clock time of the next look for jobs of gone processes
        self.policy = policy or make_policy(
            settings.poll_policy,
            first_s=settings.poll_first_delay_s,
            interval_s=settings.poll_interval_s,
            max_gap_s=settings.poll_max_gap_s,
        )
        self._gateways = gateways
        self._stack = AsyncExitStack()
        self._next_prune = 0.0  # clock time of the next look for old gallery files
        self._background: set[asyncio.Task[None]] = set()
        self._lines_due: dict[tuple[str, str], set[str]] = {}  # chats whose places to show
        self._line_tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.catalog = catalog
        self.media = MediaStore(
            settings.data_dir,
            public_base_url=settings.public_base_url,
            max_reference_bytes=settings.max_reference_bytes,
        )
        # this Core's own registry
        self.metrics = Metrics(job_counts=self._job_counts, fleet=self.heartbeat.fleet)

    async def _job_counts(self) -> list[tuple[str, str, int]]:
        return await self.store.count_by_model_state()

    def _aggregator(self) -> AggregatorGateway:
        s = self.settings
        return AggregatorGateway(
            self.http,
            base_url=s.aggregator_base_url or "",
            api_key=s.aggregator_api_key.get_secret_value() if s.aggregator_api_key else None,
            media=self.media,
            submit_path=s.aggregator_submit_path,
            task_path=s.aggregator_task_path,
            webhook_base=webhook_base(s.public_base_url, AGGREGATOR),
            timeout_s=s.gateway_timeout_s,
            observe=self.metrics.observer(AGGREGATOR),
        )

    async def __aenter__(self) -> Core:
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _open(self) -> None:
        """Open the store and the HTTP client, build the parts on them, and (but in a
        `generate` process) recover what a past process left."""
        await self._stack.enter_async_context(self.store)
        await self.heartbeat.start()  # before any claim: who else runs is known
        self._stack.push_async_callback(self._stop_beating)
        self.http = await self._stack.enter_async_context(
            httpx.AsyncClient(
                # httpcore checks every idle connection on each request: a big idle pool
                # costs ~2 ms of CPU per status poll (bench/scale); bursts open more.
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=10),
                timeout=self.settings.gateway_timeout_s,
                follow_redirects=False,
            )
        )
        self.gateways: dict[str, Gateway] = self._gateways or self._aa()
        if self._gateways is None and self.settings.aggregator_enabled:
            self.gateways[AGGREGATOR] = self._aggregator()
        self.metrics.providers = set(self.gateways)
        self._build_loops()
        self._build_use_cases()
        if not self.own_jobs_only:
            # Recovery is for the service's restart: a `generate` beside a running service
            # must not make all its waiting polls and deliveries due at once (past their
            # backoffs), and has no job of its own from a past life.
            await self._recover()
        self.media.cleanup()

    def _aa(self) -> dict[str, Gateway]:
        """The AA gateway, the one every core has (the aggregator joins it where enabled)."""
        s = self.settings
        key = s.aa_api_key.get_secret_value() if s.aa_api_key else None
        return {
            "aa": AAGateway(
                self.http,
                base_url=s.aa_base_url,
                api_key=key,
                timeout_s=s.gateway_timeout_s,
                sync_timeout_s=s.sync_timeout_s,
                observe=self.metrics.observer("aa"),
            )
        }

    def _build_loops(self) -> None:
        """The notifier, the tracker and the webhook receiver that hurries it."""
        s = self.settings
        self.notifier = Notifier(
            self.store,
            self.media,
            self.http,
            self.clock,
            max_attempts=s.delivery_max_attempts,
            progress_interval_s=s.progress_interval_s,
            result_max_bytes=s.result_max_bytes,
            metrics=self.metrics,
        )
        self.tracker = Tracker(
            self.store,
            self.gateways,
            self.catalog,
            self.media,
            self.policy,
            self.clock,
            concurrency=s.tracker_concurrency,
            sync_concurrency=s.sync_concurrency,
            on_progress=self.notifier.progress,
            on_terminal=self._job_ended,
            on_dispatch=self._line_moved,
            owner=self.owners.name,
        )
        self.webhooks = WebhookReceiver(
            self.store,
            self.catalog,
            self.tracker.hurry,
            providers=set(self.gateways),
            metrics=self.metrics,
        )

    def _build_use_cases(self) -> None:
        """The service, the sessions and the loop that keeps the sessions' cards and recaps."""
        self.service = Service(
            self.store,
            self.catalog,
            self.media,
            self.clock,
            self.settings,
            wake_tracker=self.tracker.wake,
            on_limit=self.metrics.limit_hit,
            wake_notifier=self.notifier.wake,
            on_line_changed=self._line_changed,
            owner=self.owners.name,
        )
        self.sessions = SessionService(
            self.store,
            self.service,
            self.media,
            self.clock,
            self.settings,
            on_change=self._session_changed,
        )
        self.session_keeper = SessionKeeper(self.store, self.sessions, self.clock)

    async def _stop_beating(self) -> None:
        try:
            await self.heartbeat.stop()
        except Exception:  # its row ages and its leases expire anyway
            log.exception("replica %s: not forgotten at stop", self.owners.name)

    async def _recover(self) -> None:
        """Jobs a past process left: a submit it did not finish is `interrupted`. Alone,
        every other unfinished job and delivery is due now; beside other replicas, those
        are theirs (in flight, or waiting out a backoff) and keep their times."""
        fleet = await self.heartbeat.fleet()
        others = [r.name for r in fleet.live("run") if r.name != self.owners.name]
        interrupted = await self.store.recover(
            self.clock.now(), owner_alive=self.owners.another_alive, reschedule=not others
        )
        self._interrupted(interrupted)

    async def recover_once(self) -> None:
        """While running: a `submitting` job whose owner is gone (a replica killed during a
        submit, on any host) becomes `interrupted`, never sent again."""
        await self.heartbeat.refresh()
        self._interrupted(
            await self.store.recover(
                self.clock.now(), owner_alive=self.owners.alive, reschedule=False
            )
        )

    def _interrupted(self, jobs: list[Job]) -> None:
        for job in jobs:
            log.warning("job %s: was being submitted when a process stopped: interrupted", job.id)
        if jobs:
            self.notifier.wake()

    def add_session_sink(self, sink: SessionSink) -> None:
        """Show the cards and post the recaps of `sink.platform`'s sessions through `sink`
        (an adapter registers it beside its DeliverySink)."""
        self.session_keeper.register(sink)

    def remove_session_sink(self, platform: str, sink: SessionSink | None = None) -> None:
        self.session_keeper.unregister(platform, sink)

    def _session_changed(self) -> None:
        """A session started or ended: its card, or its recap, is due now."""
        self.session_keeper.wake()

    def _line_moved(self, dispatched: list[Job]) -> None:
        """The tracker is sending these jobs: the rest of their chats' lines moved up."""
        for job in dispatched:
            self._line_changed(job.origin.platform, job.origin.scope_id, leaving={job.id})

    def _line_changed(self, platform: str, scope_id: str, *, leaving: Iterable[str] = ()) -> None:
        """Show everyone waiting in that chat their place, soon; one refresh per chat at a
        time, and one more after it when the line changed again meanwhile."""
        key = (platform, scope_id)
        self._lines_due.setdefault(key, set()).update(leaving)
        if key in self._line_tasks:
            return
        task = asyncio.create_task(self._show_places(key), name=f"line-{platform}-{scope_id}")
        self._line_tasks[key] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _show_places(self, key: tuple[str, str]) -> None:
        """Jobs still waiting in the chat show their place in line (`leaving` ones are being
        sent right now and no longer wait)."""
        try:
            while (leaving := self._lines_due.pop(key, None)) is not None:
                line = await self.service.waiting_in_line(*key, leaving=frozenset(leaving))
                for job in line:
                    self.notifier.progress(job)
        except Exception:  # places are shown again when the line next moves
            log.exception("chat %s %s: places in line not shown", *key)
        finally:
            self._line_tasks.pop(key, None)

    async def _sweep(self) -> None:
        """Expire requests nobody confirmed in time, interrupt the submits of processes
        that are gone, and forget old hosted images."""
        failures = StepFailures("sweep")
        while True:
            try:
                if await self.service.expire_holds():
                    self.notifier.wake()
                now = self.clock.now()
                if not self.own_jobs_only and now >= self._next_recover:
                    self._next_recover = now + RECOVER_INTERVAL_S
                    await self.recover_once()
                if now >= self._next_prune:
                    self._next_prune = now + PRUNE_INTERVAL_S
                    await self.sessions.prune_galleries(now)
            except Exception as exc:
                await failures.failed(exc)
                continue
            failures.ok()
            await asyncio.sleep(SWEEP_INTERVAL_S)

    def _job_ended(self, job: Job) -> None:
        spec = self.catalog.resolve(job.model)
        self.metrics.job_finished(job, spec.provider if spec else "unknown")
        self.notifier.wake()
        self.tracker.wake()  # a slot in its chat is free: a waiting job may go
        self.session_keeper.wake()  # a session's figures changed; its recap may be ready

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._stack.aclose()

    async def run(self) -> None:
        """Run the tracker, the notifier, the sweep, the heartbeat and (but in a `generate`
        process) the session loop until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.tracker.run(), name="tracker")
            tg.create_task(self.notifier.run(), name="notifier")
            tg.create_task(self._sweep(), name="sweep")
            tg.create_task(self.heartbeat.run(), name="heartbeat")
            if not self.own_jobs_only:
                tg.create_task(self.session_keeper.run(), name="sessions")

    async def stop(self, grace_s: float) -> None:
        """Stop taking new work, and give submits and deliveries in flight up to `grace_s`
        to finish (a synchronous submit is paid for: cutting it off loses the image). What
        still runs then is cancelled and logged. Polls in flight are called off at once
        (safe to repeat). Cancelling this call cuts the wait short."""
        self.tracker.stop_intake()
        self.notifier.stop_intake()
        busy = self.tracker.submits_in_flight() | self.notifier.deliveries_in_flight()
        if not busy:
            return
        log.info(
            "stopping: waiting up to %g s for %d submits and deliveries in flight",
            grace_s,
            len(busy),
        )
        try:
            _, left = await asyncio.wait(busy, timeout=grace_s)
        except asyncio.CancelledError:
            left = {t for t in busy if not t.done()}
            log.warning("stopping now: %d submits and deliveries cut off", len(left))
            raise
        finally:
            for task in (t for t in busy if not t.done()):
                task.cancel()
        for task in left:
            log.warning(
                "stopping: %s still running after %g s; cancelled", task.get_name(), grace_s
            )
        await asyncio.gather(*left, return_exceptions=True)
