"""The command line: run, demo, generate, models, jobs, sessions (a contract: verbs and
output)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr, ValidationError

from bot.app import Core
from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import ConfigError, MediaError, RequestRejected
from bot.gallery import KeptGallery, export_gallery, listed_files
from bot.logs import setup_logging
from bot.main.wiring import build_adapters, build_catalog, open_core
from bot.media import MediaStore
from bot.messages import failure_text
from bot.models import GenerationRequest, Job, JobState, Kind, Origin, ReferenceImage
from bot.runner import Runner
from bot.sessions import GalleryPage, SessionFigures
from bot.web import WebServer

__all__ = ["SessionRecords", "job_json", "main", "open_session_records", "session_json"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 2


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def job_json(job: Job, *, files: Sequence[Path] = ()) -> dict[str, Any]:
    """A job as the CLI's JSON object (keys are a contract)."""
    return {
        "id": job.id,
        "model": job.model,
        "kind": job.kind.value,
        "status": job.state.value,
        "progress": job.progress,
        "prompt": job.prompt,
        "result_urls": list(job.result_urls),
        "files": [str(f) for f in files],
        "error": job.error_message or job.error_code
        if job.state is not JobState.SUCCEEDED
        else None,
        "error_code": job.error_code,
        "upstream_task_id": job.upstream_task_id,
        "price_usd": job.price_usd,
        "refunded_usd": job.refunded_usd,
        "delivery": job.delivery.value,
        "platform": job.origin.platform,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
    }


def _exit_code(job: Job) -> int:
    if job.state is JobState.SUCCEEDED:
        return EXIT_OK
    if job.state is JobState.REJECTED:
        return EXIT_REJECTED
    return EXIT_FAILED


# -- generate ----------------------------------------------------------------------------------


async def _reference(core: Core, source: str) -> ReferenceImage:
    """-i: a local file is hosted by us; a URL is checked, then passed on as it is."""
    if source.startswith(("http://", "https://")):
        name = source.rsplit("/", 1)[-1].split("?")[0] or None
        try:
            return await core.media.check_remote(core.http, source, filename=name)
        except MediaError as exc:
            raise RequestRejected(
                f"I could not fetch {source}: {exc}.", code="image_fetch"
            ) from None
    path = Path(source).expanduser()
    if not path.is_file():
        raise RequestRejected(f"There is no file {source}.", code="no_such_file")
    return await core.media.host(path.read_bytes(), filename=path.name)


async def generate(
    core: Core,
    *,
    model: str,
    prompt: str,
    images: Sequence[str] = (),
    aspect_ratio: str | None = None,
    quality: str | None = None,
    out_dir: Path | None = None,
    quiet: bool = False,
) -> tuple[Job, list[Path]]:
    """One job through the same path as a chat request, with the terminal as its sink."""
    from adapters.console import ConsoleSink

    sink = core.notifier.sinks.get("console")
    if not isinstance(sink, ConsoleSink):
        sink = ConsoleSink(core.catalog, out_dir=out_dir, quiet=quiet)
        core.notifier.register(sink)
    spec = core.catalog.resolve(model)
    kind = spec.kind if spec else Kind.IMAGE  # an unknown model is refused with suggestions
    refs = [await _reference(core, src) for src in images]
    request = GenerationRequest(
        kind=kind,
        prompt=prompt,
        origin=Origin(platform="console", chat_id="cli", user_id=getpass.getuser()),
        model=model,
        images=tuple(refs),
        aspect_ratio=aspect_ratio,
        quality=quality,
    )
    job = await core.service.submit(request)
    sink.say(f"[{job.id}] ⏳ Queued on {spec.name if spec else model}…")
    done = await sink.wait(job.id)
    await core.notifier.drain()
    return (await core.store.get(job.id)) or done, sink.saved.get(job.id, [])


async def _cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    spec = build_catalog(settings).resolve(args.model)
    if spec is not None and spec.provider == "aggregator":
        if settings.aggregator_api_key is None:
            return _config_error(
                args, "AGGREGATOR_API_KEY is not set. Put it in the environment or .env."
            )
    elif settings.aa_api_key is None:
        return _config_error(
            args,
            "AA_API_KEY is not set. Put it in the environment or .env "
            "(`genrelay demo` needs no key).",
        )
    # `generate` runs no HTTP server, so it hands the gateway nothing that needs one:
    # reference images go as data: URLs and aggregator jobs get no webhook URL (polling
    # finds their end). Serving instead would need HTTP_PORT free while `run` may hold it,
    # and PUBLIC_BASE_URL routed to this short-lived process, for a job that may outlive it.
    settings = settings.model_copy(update={"public_base_url": None})
    # Only its own jobs: `run` or another `generate` on the same database takes the rest.
    async with open_core(settings, own_jobs_only=True) as core, Runner(core) as runner:
        try:
            job, files = await runner.until(
                generate(
                    core,
                    model=args.model,
                    prompt=args.prompt,
                    images=args.image or [],
                    aspect_ratio=args.aspect_ratio,
                    quality=args.quality,
                    out_dir=Path(args.output) if args.output else None,
                    quiet=False,
                )
            )
        except RequestRejected as exc:
            # This request's own rejected job; none when it was refused before one was
            # recorded (an -i reference that is missing, no image, too big, unreachable).
            rejected = await core.store.get(exc.job_id) if exc.job_id else None
            if args.json:
                own = job_json(rejected) if rejected else _rejection(exc.message, args.model)
                print(json.dumps(own))
            print(exc.message, file=sys.stderr)
            return EXIT_REJECTED
    if args.json:
        print(json.dumps(job_json(job, files=files)))
    elif job.state is JobState.SUCCEEDED:
        for f in files or job.result_urls:
            print(f)
    else:
        print(failure_text(job, core.catalog), file=sys.stderr)
    return _exit_code(job)


def _rejection(message: str, model: str | None = None) -> dict[str, Any]:
    """The JSON of a request refused before any job was recorded (the contract's keys)."""
    return {
        "id": None,
        "model": model,
        "status": JobState.REJECTED.value,
        "result_urls": [],
        "error": message,
        "upstream_task_id": None,
        "price_usd": None,
        "refunded_usd": None,
    }


def _config_error(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps(_rejection(message, getattr(args, "model", None))))
    print(f"genrelay: {message}", file=sys.stderr)
    return EXIT_REJECTED


# -- run ---------------------------------------------------------------------------------------


def _on_signals() -> tuple[asyncio.Event, asyncio.Event]:
    """Events set by the first and the second SIGINT/SIGTERM."""
    first, second = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lambda: (second if first.is_set() else first).set())
    return first, second


async def serve(settings: Settings, *, until: asyncio.Event | None = None) -> None:
    """Every configured adapter, the tracker, the notifier and the HTTP server. A chat
    platform that does not answer is tried again meanwhile (/readyz: 503); ConfigError
    (a setting, or a token the platform refused) ends it."""
    from adapters.console import ConsoleSink

    core = open_core(settings)  # no I/O before it is entered
    adapters = build_adapters(core, settings)
    if settings.aa_api_key is None:
        log.warning("AA_API_KEY is not set: the gateway will refuse every job")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(core)
        core.notifier.register(ConsoleSink(core.catalog))  # jobs a killed `generate` left
        web = WebServer(
            host=settings.http_host,
            port=settings.http_port,
            media=core.media,
            health=core.store.ping,
            adapters=adapters,
            metrics=core.metrics,
            webhooks=core.webhooks,
            gallery=KeptGallery(
                core.sessions.gallery_page,
                core.media.results_dir,
                model_name=model_names(core.catalog),
            ),
        )
        await stack.enter_async_context(web)
        if not adapters:
            log.info("no chat platform configured: following jobs only (tracker and notifier)")
        try:
            async with Runner(core, adapters) as runner:
                first, second = _on_signals()
                await runner.until((first if until is None else until).wait())
                await runner.stop_gracefully(settings.shutdown_grace_s, cut=second)
        finally:
            log.info("stopping")


# -- demo --------------------------------------------------------------------------------------

DEMO_JOBS = (
    ("nanobanana", "A lighthouse on a cliff at dawn, watercolor"),
    ("veo_fast", "Waves rolling onto a quiet beach at sunset, slow dolly shot"),
)


async def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from sandbox import SandboxGateway

    work = Path(tempfile.mkdtemp(prefix="genrelay-demo-"))
    out_dir = Path(args.output) if args.output else work / "results"
    key = "sandbox-demo-key"
    say = print
    async with SandboxGateway(api_key=key, speed=args.speed) as gateway:
        demo_settings = settings.model_copy(
            update={
                "aa_base_url": gateway.base_url,
                "aa_api_key": SecretStr(key),
                "database_url": f"sqlite:///{work / 'demo.db'}",
                "data_dir": work / "data",
                "public_base_url": None,
                "poll_policy": "fixed",  # sandbox runs are far shorter than real ones
                "poll_first_delay_s": 0.5,
                "poll_interval_s": 1.0,
                "progress_interval_s": 0.5,
            }
        )
        say(f"genrelay demo: a sandbox gateway runs at {gateway.base_url} (no key, no network)")
        say(f"  job store: {work / 'demo.db'}")
        say("  submitting one image job and one video job through the same path as a chat request")
        async with open_core(demo_settings) as core, Runner(core) as runner:
            results = await runner.until(
                asyncio.gather(
                    *(generate(core, model=m, prompt=p, out_dir=out_dir) for m, p in DEMO_JOBS)
                )
            )
        creates = len(gateway.create_calls())
        polls = sum(1 for r in gateway.requests if r.method == "GET" and "/tasks/" in r.path)
    say("")
    say(f"{'job':<12} {'model':<12} {'status':<10} {'task':<28} file")
    for job, files in results:
        shown = str(files[0]) if files else (job.result_urls[0] if job.result_urls else "-")
        task = job.upstream_task_id or "-"
        say(f"{job.id:<12} {job.model:<12} {job.state.value:<10} {task:<28} {shown}")
    say(f"\nthe gateway saw {creates} create calls and {polls} status polls")
    say("next: set AA_API_KEY and a bot token (see README), then `genrelay run`")
    return EXIT_OK if all(j.state is JobState.SUCCEEDED for j, _ in results) else EXIT_FAILED


# -- models and jobs ---------------------------------------------------------------------------


def _cmd_models(settings: Settings, args: argparse.Namespace) -> int:
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


async def _cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    from storage.sqlite import SqliteJobStore

    async with SqliteJobStore(settings.database_path) as store:
        jobs = await store.recent(args.limit)
    if args.json:
        print(json.dumps([job_json(j) for j in jobs]))
        return EXIT_OK
    if not jobs:
        print("no jobs yet")
        return EXIT_OK
    print(f"{'id':<12} {'created (UTC)':<20} {'model':<16} {'status':<12} {'delivery':<14} prompt")
    for j in jobs:
        created = (_iso(j.created_at) or "")[:19].replace("T", " ")
        prompt = j.prompt if len(j.prompt) <= 40 else j.prompt[:39] + "…"
        print(
            f"{j.id:<12} {created:<20} {j.model:<16} {j.state.value:<12} "
            f"{j.delivery.value:<14} {prompt}"
        )
    return EXIT_OK


# -- sessions ----------------------------------------------------------------------------------


class SessionRecords(Protocol):
    """What `genrelay sessions` reads: the session use cases (bot/session_service.py)."""

    async def list_sessions(self) -> Sequence[SessionFigures]:
        """The sessions with their figures, newest first."""
        ...

    async def gallery_page_by_id(self, session_id: str) -> GalleryPage | None:
        """The gallery page of the session with this (short) id; None when there is none."""
        ...


OpenSessions = Callable[[Settings], AbstractAsyncContextManager[SessionRecords]]


@contextlib.asynccontextmanager
async def open_session_records(settings: Settings) -> AsyncIterator[SessionRecords]:
    """The sessions of DATABASE_URL, opened for reading (nothing recovered, no loop run)."""
    async with open_core(settings, own_jobs_only=True) as core:
        yield core.sessions


def model_names(catalog: Catalog) -> Callable[[str], str]:
    """A model's display name by its code (the code itself when the catalog lost it)."""

    def name(code: str) -> str:
        spec = catalog.resolve(code)
        return spec.name if spec is not None else code

    return name


def _minute(ts: float | None) -> str:
    return (_iso(ts) or "-")[:16].replace("T", " ")


def _place(figures: SessionFigures) -> str:
    s = figures.session
    return f"{s.platform}:{s.chat_id}" + (f"/{s.thread_id}" if s.thread_id else "")


def _gallery_url(figures: SessionFigures, public_base_url: str | None) -> str | None:
    key = figures.session.gallery_key
    return f"{public_base_url}/sessions/{key}" if public_base_url else None


def session_json(figures: SessionFigures, *, public_base_url: str | None) -> dict[str, Any]:
    """A session as `genrelay sessions --json` prints it."""
    s = figures.session
    return {
        "id": s.id,
        "theme": s.theme,
        "platform": s.platform,
        "chat_id": s.chat_id,
        "thread_id": s.thread_id,
        "started_by": s.started_by_name or s.started_by,
        "started_at": _iso(s.started_at),
        "ends_at": _iso(s.ends_at),
        "ended_at": _iso(s.ended_at),
        "open": s.open,
        "entries": figures.entries,
        "people": figures.people,
        "spent_usd": round(figures.spent_usd, 4),
        "votes": figures.votes,
        "budget_usd": s.budget_usd,
        "per_person": s.per_person,
        "video": s.video,
        "gallery_key": s.gallery_key,
        "gallery_url": _gallery_url(figures, public_base_url),
    }


def _printable(text: str, limit: int = 40) -> str:
    """A chat's text for the terminal: no control characters (escape sequences), one line."""
    text = "".join(c for c in text if c.isprintable())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_sessions(rows: Sequence[SessionFigures], public_base_url: str | None) -> None:
    if not rows:
        print("no sessions yet")
        return
    header = (
        *("id", "started (UTC)", "ends / ended (UTC)", "entries", "people", "spent", "votes"),
        *("place", "gallery", "theme"),
    )
    table = [
        (
            f.session.id,
            _minute(f.session.started_at),
            ("open, ends " if f.session.open else "ended ")
            + _minute(f.session.ends_at if f.session.open else f.session.ended_at),
            str(f.entries),
            str(f.people),
            f"${f.spent_usd:.2f}",
            str(f.votes),
            _printable(_place(f)),
            _gallery_url(f, public_base_url) or f.session.gallery_key,
            _printable(f.session.theme),
        )
        for f in rows
    ]
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]
    for row in (header, *table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def _export(records: SessionRecords, settings: Settings, session_id: str, out: Path) -> int:
    page = await records.gallery_page_by_id(session_id.strip())
    if page is None:
        print(
            f"genrelay: there is no session {session_id}; `genrelay sessions` lists them.",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    if out.exists() and not out.is_dir():
        print(f"genrelay: {out} is a file; give a folder to write the gallery in.", file=sys.stderr)
        return EXIT_REJECTED
    catalog = build_catalog(settings)
    results = MediaStore(
        settings.data_dir, public_base_url=None, max_reference_bytes=settings.max_reference_bytes
    ).results_dir
    index = export_gallery(
        page,
        results,
        out,
        model_name=model_names(catalog),
    )
    kept = sum(1 for name in listed_files(page) if (out / "files" / name).is_file())
    print(
        f"the gallery of session {page.figures.session.id} "
        f"({len(page.entries)} entries, {kept} files) is in {out}",
        file=sys.stderr,
    )
    print(index)
    return EXIT_OK


async def _cmd_sessions(settings: Settings, args: argparse.Namespace, opener: OpenSessions) -> int:
    async with opener(settings) as records:
        if args.sessions_command == "export":
            return await _export(records, settings, args.id, Path(args.dir))
        rows = await records.list_sessions()
    if args.json:
        print(json.dumps([session_json(f, public_base_url=settings.public_base_url) for f in rows]))
    else:
        _print_sessions(rows, settings.public_base_url)
    return EXIT_OK


# -- main --------------------------------------------------------------------------------------


def _one_line(exc: ValidationError) -> str:
    """Pydantic's report as one line: each setting with what is wrong with it (never the
    value given: it may be a key)."""
    parts = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        names = ".".join(str(part) for part in error["loc"]).upper()
        parts.append(f"{names}: {message}" if names else message)
    return "; ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrelay", description="Images and videos for chat communities."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run", help="start every configured adapter, the tracker, notifier and HTTP server"
    )
    demo = sub.add_parser("demo", help="run one image and one video job on the built-in sandbox")
    demo.add_argument("--speed", type=float, default=1.0, help="sandbox duration factor")
    demo.add_argument("-o", "--output", help="where to save the results")
    gen = sub.add_parser("generate", help="make one image or video from the terminal")
    gen.add_argument("-m", "--model", required=True)
    gen.add_argument("-p", "--prompt", required=True)
    gen.add_argument("-i", "--image", action="append", help="reference image: URL or file")
    gen.add_argument("--aspect-ratio")
    gen.add_argument("--quality")
    gen.add_argument("-o", "--output", help="folder to save the result in")
    gen.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    models = sub.add_parser("models", help="the model catalog")
    models.add_argument("--json", action="store_true")
    jobs = sub.add_parser("jobs", help="recent jobs, newest first")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--json", action="store_true")
    sessions = sub.add_parser(
        "sessions",
        help="creative sessions with their figures; `sessions export ID DIR` writes a gallery",
    )
    sessions.add_argument("--json", action="store_true")
    ssub = sessions.add_subparsers(dest="sessions_command")
    export = ssub.add_parser(
        "export", help="write a session's gallery as files that open from disk"
    )
    export.add_argument("id", help="the session's id (see `genrelay sessions`)")
    export.add_argument("dir", help="the folder to write index.html and files/ in")
    discord = sub.add_parser("discord", help="Discord tools")
    dsub = discord.add_subparsers(dest="discord_command", required=True)
    sync = dsub.add_parser("sync", help="register the slash commands with Discord")
    sync.add_argument("--guild", type=int, help="a server id: instant, for testing")
    return parser


def main(
    argv: Sequence[str] | None = None, *, open_sessions: OpenSessions = open_session_records
) -> int:
    """The `genrelay` command. `open_sessions`: where `genrelay sessions` reads (tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        settings.database_path  # noqa: B018 - validates DATABASE_URL
    except ValidationError as exc:
        return _config_error(args, f"the configuration is invalid: {_one_line(exc)}")
    except ValueError as exc:
        return _config_error(args, f"the configuration is invalid: {exc}")
    level = settings.log_level
    quiet = ("demo", "generate", "models", "jobs", "sessions")
    if args.command in quiet and "LOG_LEVEL" not in os.environ:
        level = "WARNING"  # the terminal shows the job's own progress lines instead
    setup_logging(level, settings.secrets())
    try:
        if args.command == "models":
            return _cmd_models(settings, args)
        if args.command == "jobs":
            return asyncio.run(_cmd_jobs(settings, args))
        if args.command == "sessions":
            return asyncio.run(_cmd_sessions(settings, args, open_sessions))
        if args.command == "generate":
            return asyncio.run(_cmd_generate(settings, args))
        if args.command == "demo":
            return asyncio.run(_cmd_demo(settings, args))
        if args.command == "discord":
            from adapters.discord import sync_commands

            return asyncio.run(sync_commands(settings, guild_id=args.guild))
        asyncio.run(serve(settings))
        return EXIT_OK
    except ConfigError as exc:  # a setting, or a token a platform refused: one line, exit 2
        return _config_error(args, str(exc))
    except KeyboardInterrupt:
        return 130
