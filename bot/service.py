"""Use cases: what a chat (or the CLI) can ask of genrelay."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from bot import messages
from bot.catalog import Catalog
from bot.community import (
    ChatRules,
    Quota,
    Refusal,
    day_start,
    is_operator,
    parse_setting,
    setting_key,
)
from bot.config import Settings
from bot.constants import CONSOLE
from bot.errors import DuplicateRequest, RequestRejected
from bot.faults import crash_point
from bot.media import MediaStore
from bot.models import (
    GenerationRequest,
    Job,
    JobState,
    Kind,
    Origin,
    ReferenceImage,
    new_job_id,
)
from bot.outcomes import (
    AlreadyFinished,
    AlreadyStarted,
    Cancelled,
    CancelOutcome,
    ChatUsage,
    NothingToCancel,
    SettingChanged,
    SettingRefusal,
    UsageReport,
)
from bot.ports import Clock, CommunityStore
from bot.tracker import process_owner
from bot.validation import Checked, clean_request, validate

__all__ = ["Service"]

RESULT_KEPT_S = 24 * 3600  # gateway result URLs expire after a day

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
    ) -> None:
        self.store = store
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
        self.default_rules = ChatRules.defaults(settings)

    async def rules(self, origin: Origin) -> ChatRules:
        """This chat's rules: the service's defaults with what its admins changed."""
        stored = await self.store.chat_settings(origin.platform, origin.scope_id)
        return self.default_rules.merged(stored)

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
            return await self._again(await self._parent(dup.job_id))
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
                job.queue_position = await self._position(job)
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
            job.queue_position = await self._position(job)
        return job

    async def find_request(self, request_key: str) -> Job | None:
        """The job recorded for this request key, if any."""
        return await self.store.find_request(request_key)

    async def _position(self, job: Job) -> int | None:
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

    # -- confirmation and cancel -------------------------------------------------------------

    async def confirm(self, job_id: str, origin: Origin) -> Job:
        """Release a held job; only its asker, in its chat, may."""
        job = await self._asked_by(job_id, origin, messages.NOT_YOURS_CONFIRM)
        if job.hold is None or not await self.store.release_hold(job.id, self.clock.now()):
            raise RequestRejected(messages.NOT_HELD, code="not_held")
        log.info("job %s: confirmed by its asker", job.id)
        self.wake_tracker()
        fresh = await self.store.get(job.id)
        assert fresh is not None
        fresh.queue_position = await self._position(fresh)
        if fresh.queue_position:
            self.on_line_changed(fresh.origin.platform, fresh.origin.scope_id)
        return fresh

    async def cancel(self, job_id: str, origin: Origin) -> CancelOutcome:
        """Stop a job that was not sent yet; only its asker, in its chat, may. Returns what
        became of it (Cancelled, or why not)."""
        job = await self._asked_by(job_id, origin, messages.NOT_YOURS_CANCEL)
        if job.state is JobState.RECEIVED and await self.store.stop_waiting(
            job.id, self.clock.now(), code="cancelled", message=messages.CANCELLED
        ):
            log.info("job %s: cancelled by its asker", job.id)
            self.wake_tracker()
            self.wake_notifier()
            self.on_line_changed(job.origin.platform, job.origin.scope_id)
            return Cancelled(job.id)
        job = await self._parent(job_id)
        if job.terminal:
            return AlreadyFinished(job.id)
        return AlreadyStarted(job.id, self.catalog.get(job.model).name)

    async def cancel_latest(self, origin: Origin) -> CancelOutcome:
        """/cancel: the asker's newest job in this chat that can still be stopped."""
        jobs = await self.store.cancellable(origin.platform, origin.scope_id, origin.user_id)
        if not jobs:
            return NothingToCancel()
        waiting = [j for j in jobs if j.state is JobState.RECEIVED]
        return await self.cancel((waiting or jobs)[0].id, origin)

    async def expire_holds(self) -> int:
        """Held jobs nobody confirmed in time end as `rejected` (the asker is told)."""
        now = self.clock.now()
        minutes = max(round(self.settings.confirm_timeout_s / 60), 1)
        message = messages.confirm_expired_text(minutes)
        expired = 0
        for job_id in await self.store.expired_holds(now):
            if await self.store.stop_waiting(job_id, now, code="confirm_expired", message=message):
                expired += 1
        return expired

    # -- settings, history, usage ------------------------------------------------------------

    def is_operator(self, origin: Origin) -> bool:
        return is_operator(origin, self.settings.operator_ids)

    async def change_setting(
        self, origin: Origin, name: str, value: str, *, is_admin: bool
    ) -> SettingChanged:
        """Set one of the chat's rules; only its admins (or an operator) may."""
        if not (is_admin or self.is_operator(origin)):
            raise RequestRejected(messages.NOT_ADMIN_SETTINGS, code="not_admin")
        parsed = parse_setting(name, value, self.catalog)
        if isinstance(parsed, SettingRefusal):
            raise RequestRejected(messages.setting_refusal_text(parsed), code="bad_setting")
        key = setting_key(name)
        stored = await self.store.chat_settings(origin.platform, origin.scope_id)
        stored[key] = parsed
        await self.store.save_chat_settings(
            origin.platform, origin.scope_id, stored, by=origin.user_id, now=self.clock.now()
        )
        log.info(
            "chat %s %s: %s changed by %s", origin.platform, origin.scope_id, key, origin.user_id
        )
        return SettingChanged(key, tuple(parsed) if isinstance(parsed, list) else parsed)

    async def history(self, origin: Origin, limit: int = 10) -> list[Job]:
        return await self.store.user_history(
            origin.platform, origin.scope_id, origin.user_id, limit
        )

    async def stored_result(self, job_id: str, origin: Origin, *, anyone: bool = False) -> Job:
        """A finished job whose result can still be sent again, to its asker in its chat
        (`anyone`: to anyone in its chat, as the original under a posted result)."""
        if anyone:
            job = await self._here(job_id, origin)
        else:
            job = await self._asked_by(job_id, origin, messages.NOT_YOURS_RESEND)
        fresh = job.finished_at is not None and self.clock.now() - job.finished_at < RESULT_KEPT_S
        if job.state is not JobState.SUCCEEDED or not (
            self.media.local_result(job.id) is not None or (fresh and job.result_urls)
        ):
            raise RequestRejected(messages.RESULT_GONE, code="result_gone")
        return job

    async def usage(self, origin: Origin) -> UsageReport:
        """/usage: the asker's jobs and spend in this chat today, against its limits."""
        now = self.clock.now()
        since = day_start(now)
        rules = await self.rules(origin)
        rows = await self.store.usage_by_user(origin.platform, origin.scope_id, since)
        mine = next((r for r in rows if r.user_id == origin.user_id), None)
        jobs_today = [j for j in await self.history(origin, 200) if j.created_at >= since]
        left = 0.0
        if rules.chat_budget_usd:
            spent = await self.store.spend(
                since, platform=origin.platform, scope_id=origin.scope_id
            )
            left = max(rules.chat_budget_usd - spent, 0)
        return UsageReport(
            images=sum(1 for j in jobs_today if j.kind is Kind.IMAGE),
            images_allowed=rules.user_images_per_day,
            videos=sum(1 for j in jobs_today if j.kind is Kind.VIDEO),
            videos_allowed=rules.user_videos_per_day,
            spend_usd=mine.spend_usd if mine else 0,
            budget_usd=rules.chat_budget_usd,
            budget_left_usd=left,
            now=now,
        )

    async def chat_usage(self, origin: Origin, *, is_admin: bool) -> ChatUsage:
        """/usage chat: everyone's jobs and spend here today; for admins (and operators)."""
        if not (is_admin or self.is_operator(origin)):
            raise RequestRejected(messages.NOT_ADMIN_USAGE, code="not_admin")
        since = day_start(self.clock.now())
        rows = await self.store.usage_by_user(origin.platform, origin.scope_id, since)
        return ChatUsage(
            rows=tuple(rows),
            jobs=sum(r.jobs for r in rows),
            spend_usd=sum(r.spend_usd for r in rows),
        )

    async def _record_rejected(
        self, req: GenerationRequest, exc: RequestRejected, now: float
    ) -> None:
        spec = self.catalog.resolve(req.model) if req.model else None
        job = _job_for(
            req,
            now,
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

    async def get(self, job_id: str) -> Job | None:
        return await self.store.get(job_id)

    # -- buttons -----------------------------------------------------------------------------

    async def _parent(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        if job is None:
            raise RequestRejected(messages.UNKNOWN_JOB, code="unknown_job")
        return job

    async def _here(self, job_id: str, origin: Origin) -> Job:
        """The job a button names, if it belongs to the chat the button was pressed in (a
        button's payload comes from the client and is not trusted)."""
        job = await self._parent(job_id)
        if (job.origin.platform, job.origin.scope_id) != (origin.platform, origin.scope_id):
            log.warning(
                "job %s of %s chat %s named by a button in %s chat %s: refused",
                job.id,
                job.origin.platform,
                job.origin.scope_id,
                origin.platform,
                origin.scope_id,
            )
            raise RequestRejected(messages.OTHER_CHAT, code="other_chat")
        return job

    async def _asked_by(self, job_id: str, origin: Origin, refusal: str) -> Job:
        """The job, if `origin` is its asker in its chat."""
        job = await self._here(job_id, origin)
        if job.origin.user_id != origin.user_id:
            raise RequestRejected(refusal, code="not_the_asker")
        return job

    async def reroll(
        self,
        job_id: str,
        origin: Origin,
        *,
        status_message_id: str | None = None,
        request_key: str | None = None,
    ) -> Job:
        """The same request again, owned (and paid) by whoever pressed, in the parent's chat."""
        request = await self.action_request("reroll", job_id, origin, request_key=request_key)
        return await self.submit(request, status_message_id=status_message_id)

    async def animate(
        self,
        job_id: str,
        origin: Origin,
        *,
        model: str | None = None,
        status_message_id: str | None = None,
        request_key: str | None = None,
    ) -> Job:
        """An image result as the first frame of a video with the default video model."""
        request = await self.action_request(
            "animate", job_id, origin, model=model, request_key=request_key
        )
        return await self.submit(request, status_message_id=status_message_id)

    async def upscale(
        self,
        job_id: str,
        origin: Origin,
        *,
        status_message_id: str | None = None,
        request_key: str | None = None,
    ) -> Job:
        """A Nano Banana image again at 4K, from the result itself."""
        request = await self.action_request("upscale", job_id, origin, request_key=request_key)
        return await self.submit(request, status_message_id=status_message_id)

    async def action_request(
        self,
        action: str,
        job_id: str,
        origin: Origin,
        *,
        model: str | None = None,
        request_key: str | None = None,
    ) -> GenerationRequest:
        """What a button under a result asks for (`reroll`, `animate`, `upscale`), for
        `precheck` and `submit`; raises RequestRejected when the job cannot give it."""
        if action == "reroll":
            parent = await self._here(job_id, origin)
            return GenerationRequest(
                kind=parent.kind,
                prompt=parent.prompt,
                origin=origin,
                model=parent.model,
                images=parent.images,
                aspect_ratio=parent.aspect_ratio,
                quality=parent.quality,
                action="reroll",
                parent_job_id=parent.id,
                request_key=request_key,
            )
        if action == "animate":
            parent = await self._succeeded_image(job_id, origin, "animate")
            spec = self.catalog.resolve(model) if model else self.catalog.default_for(Kind.VIDEO)
            if spec is not None and spec.max_images == 0:
                spec = self.catalog.default_for(Kind.VIDEO)
            return GenerationRequest(
                kind=Kind.VIDEO,
                prompt=parent.prompt,
                origin=origin,
                model=spec.code if spec else None,
                images=(await self._result_as_reference(parent),),
                action="animate",
                parent_job_id=parent.id,
                request_key=request_key,
            )
        if action != "upscale":
            raise ValueError(f"no button action {action!r}")
        parent = await self._succeeded_image(job_id, origin, "upscale")
        spec = self.catalog.resolve(parent.model)
        if spec is None or "4k" not in spec.qualities:
            raise RequestRejected(messages.NO_4K, code="no_4k")
        return GenerationRequest(
            kind=Kind.IMAGE,
            prompt=parent.prompt,
            origin=origin,
            model=parent.model,
            images=(await self._result_as_reference(parent),),
            aspect_ratio=parent.aspect_ratio,
            quality="4k",
            action="upscale",
            parent_job_id=parent.id,
            request_key=request_key,
        )

    async def remix_request(
        self,
        job_id: str,
        prompt: str,
        origin: Origin,
        *,
        model: str | None = None,
        request_key: str | None = None,
    ) -> GenerationRequest:
        """A new image from a finished image result and a new prompt (a reply to a result
        with /imagine, or its Remix button), for `precheck` and `submit`. Made where a
        session runs from one of its entries, the new entry records what it remixes. With
        no `model`: the parent's when it takes reference images, else the chat's. Raises
        RequestRejected when the job has no image result."""
        parent = await self._succeeded_image(job_id, origin, "remix")
        if model is None:
            spec = self.catalog.resolve(parent.model)
            model = parent.model if spec is not None and spec.max_images > 0 else None
        return GenerationRequest(
            kind=Kind.IMAGE,
            prompt=prompt,
            origin=origin,
            model=model,
            images=(await self._result_as_reference(parent),),
            action="remix",
            parent_job_id=parent.id,
            request_key=request_key,
        )

    async def _result_as_reference(self, parent: Job) -> ReferenceImage:
        """Our copy of a result, hosted by us (the gateway's URL expires); else its URL."""
        path = self.media.local_result(parent.id)
        if path is not None:
            try:
                return await self.media.host(path.read_bytes(), filename=path.name)
            except (OSError, RequestRejected):
                pass
        return ReferenceImage(ref=parent.result_urls[0], mime="image/png", filename="result.png")

    async def _succeeded_image(self, job_id: str, origin: Origin, action: str) -> Job:
        parent = await self._here(job_id, origin)
        if parent.state is not JobState.SUCCEEDED or not parent.result_urls:
            raise RequestRejected(messages.NO_RESULT, code=f"no_result_{action}")
        if parent.kind is not Kind.IMAGE:
            raise RequestRejected(messages.ONLY_AN_IMAGE, code=f"not_image_{action}")
        return parent

    async def recent(self, limit: int = 20, **filters: str | None) -> list[Job]:
        return await self.store.recent(limit, **filters)


def _job_for(req: GenerationRequest, now: float, **fields: Any) -> Job:
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
        owner=process_owner(),  # for a console job: the `generate` process waiting for it
        **fields,
    )
