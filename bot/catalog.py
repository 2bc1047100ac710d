"""The model catalog: every model we offer, what it takes, what it costs, how long it may run."""

from __future__ import annotations

import dataclasses
import difflib
import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from bot.constants import MAX_PROMPT_CHARS
from bot.models import Kind

__all__ = ["Catalog", "Family", "ModelSpec", "default_specs", "normalize_ratio"]


class Family(enum.StrEnum):
    """Endpoint families of the AA gateway, and the aggregator's one."""

    SORA = "sora"  # POST /api/v1/aa/openapi/sora/tasks, GET /api/v1/aa/sora/tasks/{id}
    VEO_CHAT = "veo_chat"  # POST /v1/chat/completions -> video.task, GET /v1/tasks/{id}
    GPT_IMAGE_CHAT = "gpt_image_chat"  # POST /v1/chat/completions, synchronous
    NANOBANANA = "nanobanana"  # POST /v1/images/generations async, GET /v1/tasks/{id}
    AGGREGATOR = "aggregator"  # Gateway B: async image task, GET /v1/images/tasks/{id}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    code: str
    name: str  # display name
    kind: Kind
    family: Family
    description: str
    price_usd: float
    deadline_s: float
    typical_s: float  # a typical run, until the store has learned better
    provider: str = "aa"
    aliases: tuple[str, ...] = ()
    alias_prefixes: tuple[str, ...] = ()  # any name with this prefix is this model, sent as is
    min_prompt: int = 1
    max_prompt: int = MAX_PROMPT_CHARS
    max_images: int = 0
    min_images: int = 0
    aspect_ratios: tuple[str, ...] = ()
    default_aspect_ratio: str | None = None
    qualities: tuple[str, ...] = ()
    default_quality: str | None = None
    ratio_in_prompt: bool = False  # the model ignores aspect_ratio; we write it into the prompt
    reports_price: bool = False  # the gateway reports price_usd itself
    synchronous: bool = False  # the create call blocks until the result exists

    def sent_name(self, requested: str) -> str:
        """The model name to send upstream for what the user asked."""
        if any(requested.startswith(p) for p in self.alias_prefixes):
            return requested
        return self.code


_IMAGE_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4")
_RATIO_SPELLINGS = {r.replace(":", "x"): r for r in _IMAGE_RATIOS}
_QUALITY_SPELLINGS = {"hd": "hd", "ultra": "ultra", "1k": "1k", "2k": "2k", "4k": "4k"}


def normalize_ratio(value: str) -> str:
    v = value.strip().lower()
    return _RATIO_SPELLINGS.get(v, v)


def normalize_quality(value: str) -> str:
    v = value.strip().lower()
    return _QUALITY_SPELLINGS.get(v, v)


def default_specs(
    *, image_deadline_s: float = 600, video_deadline_s: float = 1800
) -> list[ModelSpec]:
    sora = dict(
        kind=Kind.VIDEO,
        family=Family.SORA,
        price_usd=0.65,
        deadline_s=video_deadline_s,
        typical_s=180,
        min_prompt=3,
        max_images=1,
        reports_price=True,
    )
    veo = dict(kind=Kind.VIDEO, family=Family.VEO_CHAT, deadline_s=video_deadline_s, max_images=2)
    banana = dict(
        kind=Kind.IMAGE,
        family=Family.NANOBANANA,
        deadline_s=image_deadline_s,
        max_images=6,
        aspect_ratios=_IMAGE_RATIOS,
        default_aspect_ratio="16:9",
        qualities=("1k", "2k", "4k", "hd", "ultra"),
        default_quality="2k",
    )
    return [
        ModelSpec(
            code="sora_studio",
            name="Sora Studio",
            description="Cinematic video from text or one photo",
            **sora,  # type: ignore[arg-type]
        ),
        ModelSpec(
            code="sora_fast",
            name="Sora Fast",
            description="Lighter Sora entry, same options",
            **sora,  # type: ignore[arg-type]
        ),
        ModelSpec(
            code="veo",
            name="Veo 3.1",
            description="Standard-quality video for finished shots",
            price_usd=0.50,
            typical_s=120,
            aspect_ratios=("16:9", "9:16"),
            default_aspect_ratio="16:9",
            **veo,  # type: ignore[arg-type]
        ),
        ModelSpec(
            code="veo_fast",
            name="Veo 3.1 Fast",
            description="Quick video drafts and previews",
            price_usd=0.25,
            # On the long side: a typical run that is too long costs a poll or two, one
            # too short several (bench.simulate); three finished runs replace it.
            typical_s=90,
            aspect_ratios=("16:9", "9:16"),
            default_aspect_ratio="16:9",
            **veo,  # type: ignore[arg-type]
        ),
        ModelSpec(
            code="veo_reference",
            name="Veo 3.1 Reference",
            description="Video that keeps the subject of your photos (needs 1-2)",
            price_usd=0.50,
            typical_s=120,
            min_images=1,
            alias_prefixes=("firefly-veo31-ref-",),
            **veo,  # type: ignore[arg-type]
        ),
        ModelSpec(
            code="gpt-image-2",
            name="GPT Image 2",
            kind=Kind.IMAGE,
            family=Family.GPT_IMAGE_CHAT,
            description="Precise images and edits that follow long prompts",
            price_usd=0.04,
            deadline_s=image_deadline_s,
            typical_s=40,
            max_images=6,
            aspect_ratios=_IMAGE_RATIOS,
            ratio_in_prompt=True,
            synchronous=True,
        ),
        ModelSpec(
            code="nanobanana",
            name="Nano Banana",
            description="Fast everyday images and photo edits",
            price_usd=0.04,
            typical_s=20,
            aliases=("gemini-2.5-flash-image",),
            **banana,  # type: ignore[arg-type]
        ),
        ModelSpec(
            code="nanobanana_pro",
            name="Nano Banana Pro",
            description="High-definition key visuals and covers, up to 4K",
            price_usd=0.14,
            typical_s=30,
            aliases=("gemini-3-pro-image-preview",),
            **banana,  # type: ignore[arg-type]
        ),
    ]


class Catalog:
    """Looks models up by code, alias or alias prefix."""

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        *,
        prices: Mapping[str, float] | None = None,
        default_image: str = "nanobanana",
        default_video: str = "veo_fast",
    ) -> None:
        prices = prices or {}
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            if spec.code in prices:
                spec = dataclasses.replace(spec, price_usd=prices[spec.code])
            self._specs[spec.code] = spec
        self._names: dict[str, str] = {}
        for spec in self._specs.values():
            self._names[spec.code.lower()] = spec.code
            for alias in spec.aliases:
                self._names[alias.lower()] = spec.code
        self.default_image = default_image
        self.default_video = default_video
        for code in (default_image, default_video):
            if self.resolve(code) is None:
                raise ValueError(f"default model {code!r} is not in the catalog")

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def all(self, kind: Kind | None = None) -> list[ModelSpec]:
        return [s for s in self._specs.values() if kind is None or s.kind is kind]

    def resolve(self, name: str) -> ModelSpec | None:
        key = name.strip().lower()
        code = self._names.get(key)
        if code is not None:
            return self._specs[code]
        for spec in self._specs.values():
            if any(key.startswith(p) for p in spec.alias_prefixes):
                return spec
        return None

    def get(self, code: str) -> ModelSpec:
        spec = self.resolve(code)
        if spec is None:
            raise KeyError(code)
        return spec

    def default_for(self, kind: Kind) -> ModelSpec:
        return self.get(self.default_image if kind is Kind.IMAGE else self.default_video)

    def suggest(self, name: str, kind: Kind | None = None, n: int = 3) -> list[str]:
        codes = [s.code for s in self.all(kind)] or [s.code for s in self.all()]
        candidates = list(self._names) + codes
        close = difflib.get_close_matches(name.strip().lower(), candidates, n=n * 2, cutoff=0.5)
        out: list[str] = []
        for c in close:
            code = self._names.get(c, c)
            if code not in out and (kind is None or self._specs[code].kind is kind):
                out.append(code)
        if not out:
            out = [c for c in codes if name.strip().lower() in c][:n]
        return out[:n]
