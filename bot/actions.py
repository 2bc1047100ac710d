"""What the buttons about a job do (`bot.models.JobAction`): the job a button names, checked
against the chat it was pressed in (and its asker, where only the asker may); Confirm and
Cancel of a job not sent yet (and /cancel, and holds nobody confirmed in time); Send again;
and the requests Reroll, Animate, 4K and Remix make of a result. Part of the use cases
`Service` (bot/service.py) offers under the same names; new requests go through its
`submit`, so they are checked and recorded like any other."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from bot import messages
from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import RequestRejected
from bot.media import MediaStore
from bot.models import GenerationRequest, Job, JobState, Kind, Origin, ReferenceImage
from bot.outcomes import AlreadyFinished, AlreadyStarted, Cancelled, CancelOutcome, NothingToCancel
from bot.ports import Clock, CommunityStore

__all__ = ["RESULT_KEPT_S", "Intake", "JobActions"]

RESULT_KEPT_S = 24 * 3600  # gateway result URLs expire after a day

log = logging.getLogger(__name__)


class Intake(Protocol):
    """What the actions use of `Service`: its parts, and what it does with a job that joins
    or leaves a chat's line. Read on each press, so a wrapped `submit` wraps them too."""

    store: CommunityStore
    catalog: Catalog
    media: MediaStore
    clock: Clock
    settings: Settings
    wake_tracker: Callable[[], None]
    wake_notifier: Callable[[], None]
    on_line_changed: Callable[[str, str], None]

    async def submit(self, req: GenerationRequest, *, status_message_id: str | None = None) -> Job:
        """Record a request as a job, or raise its refusal."""
        ...

    async def place_in_line(self, job: Job) -> int | None:
        """Its place when its chat is at its concurrency limit, else None."""
        ...


class JobActions:
    """The jobs buttons name, and what the buttons do with them."""

    def __init__(self, service: Intake) -> None:
        self.service = service
        self.store = service.store
        self.catalog = service.catalog
        self.media = service.media
        self.clock = service.clock

    # -- the job a button names --------------------------------------------------------------

    async def job(self, job_id: str) -> Job:
        """The job, wherever it was asked; RequestRejected when there is none."""
        job = await self.store.get(job_id)
        if job is None:
            raise RequestRejected(messages.UNKNOWN_JOB, code="unknown_job")
        return job

    async def job_here(self, job_id: str, origin: Origin) -> Job:
        """The job a button names, if it belongs to the chat the button was pressed in (a
        button's payload comes from the client and is not trusted)."""
        job = await self.job(job_id)
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

    async def asked_by(self, job_id: str, origin: Origin, refusal: str) -> Job:
        """The job, if `origin` is its asker in its chat."""
        job = await self.job_here(job_id, origin)
        if job.origin.user_id != origin.user_id:
            raise RequestRejected(refusal, code="not_the_asker")
        return job

    # -- Confirm, Cancel, Send again -------------------------------------------------------

    async def confirm(self, job_id: str, origin: Origin) -> Job:
        """Release a held job; only its asker, in its chat, may."""
        job = await self.asked_by(job_id, origin, messages.NOT_YOURS_CONFIRM)
        if job.hold is None or not await self.store.release_hold(job.id, self.clock.now()):
            raise RequestRejected(messages.NOT_HELD, code="not_held")
        log.info("job %s: confirmed by its asker", job.id)
        self.service.wake_tracker()
        fresh = await self.store.get(job.id)
        assert fresh is not None
        fresh.queue_position = await self.service.place_in_line(fresh)
        if fresh.queue_position:
            self.service.on_line_changed(fresh.origin.platform, fresh.origin.scope_id)
        return fresh

    async def cancel(self, job_id: str, origin: Origin) -> CancelOutcome:
        """Stop a job that was not sent yet; only its asker, in its chat, may. Returns what
        became of it (Cancelled, or why not)."""
        job = await self.asked_by(job_id, origin, messages.NOT_YOURS_CANCEL)
        if job.state is JobState.RECEIVED and await self.store.stop_waiting(
            job.id, self.clock.now(), code="cancelled", message=messages.CANCELLED
        ):
            log.info("job %s: cancelled by its asker", job.id)
            self.service.wake_tracker()
            self.service.wake_notifier()
            self.service.on_line_changed(job.origin.platform, job.origin.scope_id)
            return Cancelled(job.id)
        job = await self.job(job_id)
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
        minutes = max(round(self.service.settings.confirm_timeout_s / 60), 1)
        message = messages.confirm_expired_text(minutes)
        expired = 0
        for job_id in await self.store.expired_holds(now):
            if await self.store.stop_waiting(job_id, now, code="confirm_expired", message=message):
                expired += 1
        return expired

    async def stored_result(self, job_id: str, origin: Origin, *, anyone: bool = False) -> Job:
        """A finished job whose result can still be sent again, to its asker in its chat
        (`anyone`: to anyone in its chat, as the original under a posted result)."""
        if anyone:
            job = await self.job_here(job_id, origin)
        else:
            job = await self.asked_by(job_id, origin, messages.NOT_YOURS_RESEND)
        fresh = job.finished_at is not None and self.clock.now() - job.finished_at < RESULT_KEPT_S
        if job.state is not JobState.SUCCEEDED or not (
            self.media.local_result(job.id) is not None or (fresh and job.result_urls)
        ):
            raise RequestRejected(messages.RESULT_GONE, code="result_gone")
        return job

    # -- Reroll, Animate, 4K ----------------------------------------------------------------

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
        return await self.service.submit(request, status_message_id=status_message_id)

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
        return await self.service.submit(request, status_message_id=status_message_id)

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
        return await self.service.submit(request, status_message_id=status_message_id)

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
            return await self._reroll_request(job_id, origin, request_key)
        if action == "animate":
            return await self._animate_request(job_id, origin, model, request_key)
        if action != "upscale":
            raise ValueError(f"no button action {action!r}")
        return await self._upscale_request(job_id, origin, request_key)

    async def _reroll_request(
        self, job_id: str, origin: Origin, request_key: str | None
    ) -> GenerationRequest:
        parent = await self.job_here(job_id, origin)
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

    async def _animate_request(
        self, job_id: str, origin: Origin, model: str | None, request_key: str | None
    ) -> GenerationRequest:
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

    async def _upscale_request(
        self, job_id: str, origin: Origin, request_key: str | None
    ) -> GenerationRequest:
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

    # -- Remix -------------------------------------------------------------------------------

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
        parent = await self.job_here(job_id, origin)
        if parent.state is not JobState.SUCCEEDED or not parent.result_urls:
            raise RequestRejected(messages.NO_RESULT, code=f"no_result_{action}")
        if parent.kind is not Kind.IMAGE:
            raise RequestRejected(messages.ONLY_AN_IMAGE, code=f"not_image_{action}")
        return parent
