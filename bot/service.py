"""Use cases: what a chat (or the CLI) can ask of genrelay."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.catalog import Catalog
from bot.errors import RequestRejected
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
from bot.ports import Clock, JobStore
from bot.validation import validate

__all__ = ["Service"]

log = logging.getLogger(__name__)


class Service:
    """Validates requests, records them as jobs and hands them to the tracker."""

    def __init__(
        self,
        store: JobStore,
        catalog: Catalog,
        media: MediaStore,
        clock: Clock,
        *,
        wake_tracker: Callable[[], None] = lambda: None,
        max_image_bytes: int,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.media = media
        self.clock = clock
        self.wake_tracker = wake_tracker
        self.max_image_bytes = max_image_bytes

    def check(self, req: GenerationRequest) -> None:
        """Validate without recording anything; raises RequestRejected."""
        validate(req, self.catalog, max_image_bytes=self.max_image_bytes)

    async def submit(self, req: GenerationRequest, *, status_message_id: str | None = None) -> Job:
        """Record the request and queue it. A refused request is recorded as `rejected`
        (nothing is sent upstream) and RequestRejected is raised with the user's words."""
        now = self.clock.now()
        try:
            checked = validate(req, self.catalog, max_image_bytes=self.max_image_bytes)
        except RequestRejected as exc:
            await self._record_rejected(req, exc, now)
            raise
        job = Job(
            id=new_job_id(),
            kind=req.kind,
            model=checked.model,
            prompt=req.prompt.strip(),
            origin=req.origin,
            images=req.images,
            aspect_ratio=checked.aspect_ratio,
            quality=checked.quality,
            action=req.action,
            parent_job_id=req.parent_job_id,
            state=JobState.RECEIVED,
            status_message_id=status_message_id,
            created_at=now,
            updated_at=now,
            next_poll_at=now,
        )
        await self.store.create(job)
        log.info(
            "job %s: received from %s chat %s (model=%s action=%s)",
            job.id,
            req.origin.platform,
            req.origin.chat_id,
            job.model,
            job.action,
        )
        self.wake_tracker()
        return job

    async def _record_rejected(
        self, req: GenerationRequest, exc: RequestRejected, now: float
    ) -> None:
        spec = self.catalog.resolve(req.model) if req.model else None
        job = Job(
            id=new_job_id(),
            kind=req.kind,
            model=spec.code if spec else (req.model or self.catalog.default_for(req.kind).code),
            prompt=req.prompt,
            origin=req.origin,
            images=req.images,
            aspect_ratio=req.aspect_ratio,
            quality=req.quality,
            action=req.action,
            parent_job_id=req.parent_job_id,
            state=JobState.REJECTED,
            error_code=exc.code,
            error_message=exc.message,
            created_at=now,
            updated_at=now,
            finished_at=now,
        )
        await self.store.create(job)
        log.info("job %s: rejected (%s) from %s", job.id, exc.code, req.origin.platform)

    async def attach_status_message(self, job_id: str, message_id: str) -> None:
        await self.store.set_status_message(job_id, message_id)

    async def get(self, job_id: str) -> Job | None:
        return await self.store.get(job_id)

    # -- buttons -----------------------------------------------------------------------------

    async def _parent(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        if job is None:
            raise RequestRejected("I can't find that job any more.", code="unknown_job")
        return job

    async def reroll(self, job_id: str, origin: Origin) -> Job:
        """The same request again, owned by whoever asked."""
        parent = await self._parent(job_id)
        return await self.submit(
            GenerationRequest(
                kind=parent.kind,
                prompt=parent.prompt,
                origin=origin,
                model=parent.model,
                images=parent.images,
                aspect_ratio=parent.aspect_ratio,
                quality=parent.quality,
                action="reroll",
                parent_job_id=parent.id,
            )
        )

    async def animate(self, job_id: str, origin: Origin, *, model: str | None = None) -> Job:
        """An image result as the first frame of a video with the default video model."""
        parent = await self._succeeded_image(job_id, "animate")
        spec = self.catalog.resolve(model) if model else self.catalog.default_for(Kind.VIDEO)
        if spec is not None and spec.max_images == 0:
            spec = self.catalog.default_for(Kind.VIDEO)
        image = self._result_as_reference(parent)
        return await self.submit(
            GenerationRequest(
                kind=Kind.VIDEO,
                prompt=parent.prompt,
                origin=origin,
                model=spec.code if spec else None,
                images=(image,),
                action="animate",
                parent_job_id=parent.id,
            )
        )

    async def upscale(self, job_id: str, origin: Origin) -> Job:
        """A Nano Banana image again at 4K, from the result itself."""
        parent = await self._succeeded_image(job_id, "upscale")
        spec = self.catalog.resolve(parent.model)
        if spec is None or "4k" not in spec.qualities:
            raise RequestRejected("4K is only offered for Nano Banana images.", code="no_4k")
        image = self._result_as_reference(parent)
        return await self.submit(
            GenerationRequest(
                kind=Kind.IMAGE,
                prompt=parent.prompt,
                origin=origin,
                model=parent.model,
                images=(image,),
                aspect_ratio=parent.aspect_ratio,
                quality="4k",
                action="upscale",
                parent_job_id=parent.id,
            )
        )

    def _result_as_reference(self, parent: Job) -> ReferenceImage:
        """Our copy of a result, hosted by us (the gateway's URL expires); else its URL."""
        path = self.media.local_result(parent.id)
        if path is not None:
            try:
                return self.media.host(path.read_bytes(), filename=path.name)
            except (OSError, RequestRejected):
                pass
        return ReferenceImage(ref=parent.result_urls[0], mime="image/png", filename="result.png")

    async def _succeeded_image(self, job_id: str, action: str) -> Job:
        parent = await self._parent(job_id)
        if parent.state is not JobState.SUCCEEDED or not parent.result_urls:
            raise RequestRejected(
                "That job has no finished image to work from.", code=f"no_result_{action}"
            )
        if parent.kind is not Kind.IMAGE:
            raise RequestRejected("Only an image can be used for that.", code=f"not_image_{action}")
        return parent

    async def recent(self, limit: int = 20, **filters: str | None) -> list[Job]:
        return await self.store.recent(limit, **filters)
