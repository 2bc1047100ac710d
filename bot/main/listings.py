"""`genrelay models`, `genrelay jobs` and `genrelay migrate`: the catalog and the recent
jobs, as a table or as JSON, and the store's schema brought up to date."""

from __future__ import annotations

import argparse
import json

from bot.config import Settings
from bot.logs import redact_url
from bot.main.output import EXIT_OK, iso, job_json
from bot.main.wiring import build_catalog, job_store

__all__ = ["cmd_jobs", "cmd_migrate", "cmd_models"]


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    catalog = build_catalog(settings)
    if args.json:
        rows = [
            {
                "code": s.code,
                "name": s.name,
                "kind": s.kind.value,
                "family": s.family.value,
                "provider": s.provider,
                "aliases": list(s.aliases) + [p + "*" for p in s.alias_prefixes],
                "max_images": s.max_images,
                "aspect_ratios": list(s.aspect_ratios),
                "qualities": list(s.qualities),
                "price_usd": s.price_usd,
                "deadline_s": s.deadline_s,
                "description": s.description,
            }
            for s in catalog.all()
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    header = ("model", "kind", "name", "images", "aspect ratios", "quality", "price", "deadline")
    rows_t = [
        (
            s.code + (" *" if s.code in (catalog.default_image, catalog.default_video) else ""),
            s.kind.value,
            s.name,
            f"{s.min_images}-{s.max_images}" if s.min_images else str(s.max_images),
            ", ".join(s.aspect_ratios) or "-",
            ", ".join(s.qualities) or "-",
            f"${s.price_usd:.2f}" + (" (reported)" if s.reports_price else ""),
            f"{s.deadline_s / 60:g} min",
        )
        for s in catalog.all()
    ]
    widths = [max(len(r[i]) for r in (header, *rows_t)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows_t):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print("\n* default for /imagine and /video")
    for s in catalog.all():
        names = list(s.aliases) + [p + "*" for p in s.alias_prefixes]
        if names:
            print(f"{s.code} also answers to {', '.join(names)}")
    return EXIT_OK


async def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    async with job_store(settings, own_jobs_only=True) as store:
        jobs = await store.recent(args.limit)
    if args.json:
        print(json.dumps([job_json(j) for j in jobs]))
        return EXIT_OK
    if not jobs:
        print("no jobs yet")
        return EXIT_OK
    print(f"{'id':<12} {'created (UTC)':<20} {'model':<16} {'status':<12} {'delivery':<14} prompt")
    for j in jobs:
        created = (iso(j.created_at) or "")[:19].replace("T", " ")
        prompt = j.prompt if len(j.prompt) <= 40 else j.prompt[:39] + "…"
        print(
            f"{j.id:<12} {created:<20} {j.model:<16} {j.state.value:<12} "
            f"{j.delivery.value:<14} {prompt}"
        )
    return EXIT_OK


async def cmd_migrate(settings: Settings) -> int:
    """Open the store of DATABASE_URL (which applies the migrations it lacks) and print the
    schema version it is at (a first `run` migrates as well)."""
    async with job_store(settings, own_jobs_only=True) as store:
        version = await store.schema_version()
    if settings.database_engine == "postgresql":
        where = f"PostgreSQL {redact_url(settings.database_url)}"
    else:
        where = f"SQLite {settings.database_path}"
    print(f"{where}: schema version {version}")
    return EXIT_OK
