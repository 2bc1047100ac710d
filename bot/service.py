"""Use cases: what a chat (or the CLI) can ask of genrelay. `Service` is the one object the
adapters call: it records requests as jobs (checked against the catalog and the chat's
rules and limits, once per request key), tells a waiting job its place in line, and offers
under the same names what the buttons about a job do (bot/actions.py: confirm, cancel,
send again, reroll, animate, upscale, remix) and a chat's settings, usage and history
(bot/chat_admin.py)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from bot import messages
from bot.actions import JobActions
from bot.catalog import Catalog
from bot.chat_admin import ChatAdmin
from bot.community import ChatRules, Quota, Refusal, day_start
from bot.config import Settings
from bot.constants import CONSOLE
from bot.errors import DuplicateRequest, RequestRejected
from bot.faults import crash_point
from bot.media import MediaStore
from bot.models import GenerationRequest, Job, JobState, Kind, new_job_id
from bot.outcomes import AfterFailure, NothingRecorded, Recorded, RecordUnknown
from bot.owners import process_owner
from bot.ports import Clock, CommunityStore
from bot.validation import Checked, clean_request, validate

__all__ = ["Service"]

log = logging.getLogger(__name__)


class Service:
    """Validates requests, records them as jobs and hands them to the tracker."""

    def __init__(
        self,
        store: CommunityStore,
        catalog: Catalog,
        media: MediaStore,
        clock: Clock,
        settings: Settings,
        *,
        wake_tracker: Callable[[], None] = lambda: None,
        on_limit: Callable[[str], None] = lambda limit: None,
        wake_notifier: Callable[[], None] = lambda: None,
        on_line_changed: Callable[[str, str], None] = lambda platform, scope_id: None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.owner = owner or process_owner()  # written on the jobs it makes
        self.catalog = catalog
        self.media = media
        self.clock = clock
        self.settings = settings
        self.wake_tracker = wake_tracker
        self.on_limit = on_limit  # metrics: a request refused by a community limit
        self.wake_notifier = wake_notifier  # a job ended here (cancel): tell its chat now
        # A chat's line changed (a job joined it or left it unsent): show everyone's place.
        self.on_line_changed = on_line_changed
        self.max_image_bytes = settings.max_reference_bytes
        # What the buttons about a job do: Confirm, Cancel (and /cancel, and the holds that
        # expire), Send again, and the requests of Reroll, Animate, 4K and Remix.
        self.actions = JobActions(self)
        self.confirm = self.actions.confirm
        self.cancel = self.actions.cancel
        self.cancel_latest = self.actions.cancel_latest
        self.expire_holds = self.actions.expire_holds
        self.stored_result = self.actions.stored_result
        self.reroll = self.actions.reroll
        self.animate = self.actions.animate
        self.upscale = self.actions.upscale
        self.action_request = self.actions.action_request
        self.remix_request = self.actions.remix_request
        # A chat's settings, usage and history.
        self.chat = ChatAdmin(store, catalog, clock, settings)
        self.rules = self.chat.rules
        self.is_operator = self.chat.is_operator
        self.change_setting = self.chat.change_setting
        self.history = self.chat.history
        self.usage = self.chat.usage
        self.chat_usage = self.chat.chat_usage

    def _quota(self, rules: ChatRules, req: GenerationRequest, now: float) -> Quota:
        global_budget = self.settings.global_daily_budget_usd
        if req.origin.platform == CONSOLE:
            # The operator's terminal is no chat member: each `generate` is its own asker,
            # and several may run at once; only the service's budget binds them.
            return Quota(since=day_start(now), global_budget_usd=global_budget or None)
        kind = req.kind
        return Quota(
            since=day_start(now),
            user_unfinished=rules.user_jobs_at_once,
            user_daily=rules.daily_limit(kind),
            chat_budget_usd=rules.chat_budget_usd or None,
            global_budget_usd=global_budget or None,
        )

    def _chat_rule_check(self, req: GenerationRequest, model: str, rules: ChatRules) -> None:
        spec = self.catalog.get(model)
        if rules.allowed_models and spec.code not in rules.allowed_models:
            allowed = [c for c in rules.allowed_models if self.catalog.get(c).kind is req.kind]
            raise RequestRejected(
                messages.model_not_allowed_text(spec.name, allowed), code="model_not_allowed"
            )
        word = rules.blocked_word_in(req.prompt)
        if word is not None:
            raise RequestRejected(messages.blocked_word_text(word), code="blocked_word")

    def check(self, req: GenerationRequest) -> None:
        """Validate without recording anything; raises RequestRejected."""
        validate(req, self.catalog, max_image_bytes=self.max_image_bytes)

    async def precheck(self, req: GenerationRequest) -> None:
        """Every refusal `submit` would give, found without recording anything: the catalog,
        the chat's rules, and its limits as they stand (one read in a write transaction).
        Quick enough for a platform's first answer (Discord wants one within 3 s), so a
        refusal can be that answer. Raises RequestRejected; the caller records it with
        `record_rejected` once it has answered. `submit` checks the limits again
        atomically: another request may take the last slot meanwhile."""
        now = self.clock.now()
        req, rules = await self._prepared(req)
        checked = self._validated(req, rules)
        job = self._new_job(req, rules, checked, now, status_message_id=None)
        refusal = await self.store.over_limit(job, self._quota(rules, req, now))
        if refusal is not None:
            raise self._over(refusal, req, job, now)

    async def record_rejected(self, req: GenerationRequest, exc: RequestRejected) -> None:
        """Record a request `precheck` refused as a `rejected` job (nothing was sent)."""
        req, _ = await self._prepared(req)
        await self._record_rejected(req, exc, self.clock.now())

    async def _prepared(self, req: GenerationRequest) -> tuple[GenerationRequest, ChatRules]:
        """The cleaned request with the chat's model if it named none, and the chat's rules."""
        req = clean_request(req)  # no control or bidi characters upstream, or back in chat
        rules = await self.rules(req.origin)
        if req.model is None:
            req = dataclasses.replace(req, model=rules.model_for(req.kind))
        return req, rules

    def _validated(self, req: GenerationRequest, rules: ChatRules) -> Checked:
        """The catalog's and the chat's checks; raises RequestRejected."""
        checked = validate(req, self.catalog, max_image_bytes=self.max_image_bytes)
        self._chat_rule_check(req, checked.model, rules)
        return checked

    def _new_job(
        self,
        req: GenerationRequest,
        rules: ChatRules,
        checked: Checked,
        now: float,
        *,
        status_message_id: str | None,
    ) -> Job:
        held = rules.video_confirm and req.kind is Kind.VIDEO
        return _job_for(
            req,
            now,
            owner=self.owner,
            model=checked.model,
            prompt=req.prompt.strip(),
            aspect_ratio=checked.aspect_ratio,
            quality=checked.quality,
            state=JobState.RECEIVED,
            status_message_id=status_message_id,
            price_usd=checked.spec.price_usd,  # an estimate until the gateway says
            next_poll_at=None if held else now,
            hold="confirm" if held else None,
            hold_expires_at=now + self.settings.confirm_timeout_s if held else None,
        )

    def _over(
        self, refusal: Refusal, req: GenerationRequest, job: Job, now: float
    ) -> RequestRejected:
        log.info("job refused: %s over %s", req.origin.user_id, refusal.limit)
        self.on_limit(refusal.limit)
        words = messages.limit_text(refusal, job.kind, job.price_usd, now)
        return RequestRejected(words, code=f"limit_{refusal.limit}")

    async def submit(self, req: GenerationRequest, *, status_message_id: str | None = None) -> Job:
        """Check the request against the catalog and the chat's rules and record it. A job
        over a limit is refused atomically in the store. A refused request is recorded as
        `rejected` (nothing is sent upstream) and RequestRejected is raised with the words.
        A video in a chat that wants confirmation waits with `hold == "confirm"`; one over
        the chat's concurrency waits its turn (`queue_position`).

        Idempotent per `req.request_key`: a request already recorded (a replayed or
        twice-delivered update) returns its job, or raises its refusal again, and records
        nothing new."""
        if req.request_key is not None:
            existing = await self.store.find_request(req.request_key)
            if existing is not None:
                return await self._again(existing)
        now = self.clock.now()
        req, rules = await self._prepared(req)
        try:
            checked = self._validated(req, rules)
        except RequestRejected as exc:
            await self._record_rejected(req, exc, now)
            raise
        job = self._new_job(req, rules, checked, now, status_message_id=status_message_id)
        held = job.hold is not None
        try:
            refusal = await self.store.admit(job, self._quota(rules, req, now))
        except DuplicateRequest as dup:  # the same request, recorded meanwhile
            return await self._again(await self.actions.job(dup.job_id))
        if refusal is not None:
            over = self._over(refusal, req, job, now)
            await self._record_rejected(req, over, now)
            raise over
        crash_point("job_recorded")
        log.info(
            "job %s: received from %s chat %s (model=%s action=%s%s)",
            job.id,
            req.origin.platform,
            req.origin.chat_id,
            job.model,
            job.action,
            " held for confirmation" if held else "",
        )
        if not held:
            self.wake_tracker()
            try:
                job.queue_position = await self.place_in_line(job)
            except Exception:  # the job is recorded: its place is only for show
                log.exception("job %s: place in line not known", job.id)
            if job.queue_position:  # it may go ahead of others: turns alternate
                self.on_line_changed(job.origin.platform, job.origin.scope_id)
        return job

    async def _again(self, job: Job) -> Job:
        """A request that was recorded already: its job as it is now, or its refusal."""
        log.info("job %s: its request (%s) came again; not recorded twice", job.id, job.request_key)
        if job.state is JobState.REJECTED:
            raise RequestRejected(
                job.error_message or messages.REFUSED, code=job.error_code or "rejected"
            )
        if job.state is JobState.RECEIVED and job.hold is None:
            job.queue_position = await self.place_in_line(job)
        return job

    async def find_request(self, request_key: str) -> Job | None:
        """The job recorded for this request key, if any."""
        return await self.store.find_request(request_key)

    async def after_failure(self, request_key: str) -> AfterFailure:
        """After an unexpected failure of a request that starts a job: its job was recorded
        (it goes on, its result still comes), or none was (nothing was started; a refusal
        recorded counts as none), or that cannot be told. Adapters word each."""
        try:
            job = await self.find_request(request_key)
        except Exception:
            log.exception("request %s: job lookup failed", request_key)
            return RecordUnknown()
        if job is None or job.state is JobState.REJECTED:
            return NothingRecorded()
        log.info("job %s: recorded before the failure; it goes on", job.id)
        return Recorded(job)

    async def place_in_line(self, job: Job) -> int | None:
        """Its place in line when its chat is at its concurrency limit, else None."""
        o = job.origin
        active, limit = await self.store.scope_load(o.platform, o.scope_id, self.clock.now())
        if active < limit:
            return None
        return (await self.store.queue_positions(o.platform, o.scope_id)).get(job.id)

    async def waiting_in_line(
        self, platform: str, scope_id: str, *, leaving: frozenset[str] = frozenset()
    ) -> list[Job]:
        """The chat's jobs still waiting for a slot, with their places, for status updates.
        `leaving` are jobs being sent right now (they no longer wait). Empty when the chat
        has a free slot: then nobody is waiting for long."""
        positions = await self.store.queue_positions(platform, scope_id)
        active, limit = await self.store.scope_load(platform, scope_id, self.clock.now())
        if active < limit:  # `leaving` jobs already count as active
            return []
        jobs: list[Job] = []
        for job_id in (j for j in positions if j not in leaving):
            job = await self.store.get(job_id)
            if job is not None:
                job.queue_position = len(jobs) + 1
                jobs.append(job)
        return jobs

    async def _record_rejected(
        self, req: GenerationRequest, exc: RequestRejected, now: float
    ) -> None:
        spec = self.catalog.resolve(req.model) if req.model else None
        job = _job_for(
            req,
            now,
            owner=self.owner,
            model=spec.code if spec else (req.model or self.catalog.default_for(req.kind).code),
            prompt=req.prompt,
            aspect_ratio=req.aspect_ratio,
            quality=req.quality,
            state=JobState.REJECTED,
            error_code=exc.code,
            error_message=exc.message,
            finished_at=now,
        )
        try:
            await self.store.create(job)
        except DuplicateRequest:  # recorded already (a replay): once is enough
            return
        exc.job_id = job.id
        log.info("job %s: rejected (%s) from %s", job.id, exc.code, req.origin.platform)

    async def attach_status_message(self, job_id: str, message_id: str) -> None:
        await self.store.set_status_message(job_id, message_id)

    async def claim_status(self, job_id: str) -> bool:
        """Before a status message for the job is sent: False when it has one or one was
        being sent (perhaps by a process that died before it stored the id): send none."""
        return await self.store.claim_status(job_id, self.clock.now())

    async def release_status(self, job_id: str) -> None:
        """The platform surely did not take the status message: another may be sent."""
        await self.store.release_status(job_id)

    async def owe_status_drop(self, job_id: str) -> None:
        """The job's status message is to be deleted once the chat's budget allows: kept
        before the delivery is recorded, so a process killed meanwhile leaves it owed."""
        await self.store.owe_status_drop(job_id, self.clock.now())

    async def status_dropped(self, job_id: str) -> None:
        await self.store.status_dropped(job_id)

    async def owed_status_drops(self, platform: str) -> list[Job]:
        return await self.store.owed_status_drops(platform)

    async def get(self, job_id: str) -> Job | None:
        return await self.store.get(job_id)

    async def recent(self, limit: int = 20, **filters: str | None) -> list[Job]:
        return await self.store.recent(limit, **filters)


def _job_for(req: GenerationRequest, now: float, *, owner: str, **fields: Any) -> Job:
    """A new job row for `req`; `fields` are what differs between kept and refused ones."""
    return Job(
        id=new_job_id(),
        kind=req.kind,
        origin=req.origin,
        images=req.images,
        action=req.action,
        parent_job_id=req.parent_job_id,
        request_key=req.request_key,
        created_at=now,
        updated_at=now,
        owner=owner,  # for a console job: the `generate` process waiting for it
        **fields,
    )
