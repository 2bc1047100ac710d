"""The command line: run, demo, generate, models, jobs, sessions, migrate (a contract: verbs
and output). This is `genrelay`'s entry point (`main`) and its running verbs; the parser is
commands.py's, the contract output output.py's, `models`, `jobs` and `migrate` listings.py's,
`sessions` sessions_cli.py's."""

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
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr, ValidationError

from bot.app import Core
from bot.config import Settings
from bot.errors import ConfigError, MediaError, RequestRejected
from bot.gallery import KeptGallery
from bot.logs import setup_logging
from bot.main.commands import build_parser
from bot.main.listings import cmd_jobs, cmd_migrate, cmd_models
from bot.main.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    config_error,
    exit_code,
    job_json,
    rejection,
)
from bot.main.sessions_cli import OpenSessions, cmd_sessions, model_names, open_session_records
from bot.main.wiring import build_adapters, build_catalog, open_core, telegram_webhook
from bot.messages import failure_text, fetch_failed_text, no_such_file_text
from bot.models import GenerationRequest, Job, JobState, Kind, Origin, ReferenceImage
from bot.runner import Runner
from bot.web import WebServer

__all__ = ["generate", "main", "serve"]

log = logging.getLogger(__name__)

# -- generate ----------------------------------------------------------------------------------


async def _reference(core: Core, source: str) -> ReferenceImage:
    """-i: a local file is hosted by us; a URL is checked, then passed on as it is."""
    if source.startswith(("http://", "https://")):
        name = source.rsplit("/", 1)[-1].split("?")[0] or None
        try:
            return await core.media.check_remote(core.http, source, filename=name)
        except MediaError as exc:
            raise RequestRejected(fetch_failed_text(source, str(exc)), code="image_fetch") from None
    path = Path(source).expanduser()
    if not path.is_file():
        raise RequestRejected(no_such_file_text(source), code="no_such_file")
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
            return config_error(
                args, "AGGREGATOR_API_KEY is not set. Put it in the environment or .env."
            )
    elif settings.aa_api_key is None:
        return config_error(
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
                own = job_json(rejected) if rejected else rejection(exc.message, args.model)
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
    return exit_code(job)


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
    port = settings.http_port
    hook = telegram_webhook(core, settings) if port is not None else None
    adapters = build_adapters(core, settings, telegram_hook=hook)
    if settings.aa_api_key is None:
        log.warning("AA_API_KEY is not set: the gateway will refuse every job")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(core)
        core.notifier.register(ConsoleSink(core.catalog))  # jobs a killed `generate` left
        if port is not None:
            web = WebServer(
                host=settings.http_host,
                port=port,
                media=core.media,
                health=core.store.ping,
                adapters=adapters,
                metrics=core.metrics,
                webhooks=core.webhooks,
                fleet=core.heartbeat.fleet,
                gallery=KeptGallery(
                    core.sessions.gallery_page,
                    core.media.results_dir,
                    model_name=model_names(core.catalog),
                ),
                routes=[hook] if hook is not None else [],
            )
            await stack.enter_async_context(web)
        else:
            log.info("HTTP_PORT is off: no HTTP server (no /healthz, hosted images, webhooks)")
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


def main(
    argv: Sequence[str] | None = None, *, open_sessions: OpenSessions = open_session_records
) -> int:
    """The `genrelay` command. `open_sessions`: where `genrelay sessions` reads (tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        return config_error(args, f"the configuration is invalid: {_one_line(exc)}")
    except ValueError as exc:
        return config_error(args, f"the configuration is invalid: {exc}")
    level = settings.log_level
    quiet = ("demo", "generate", "models", "jobs", "sessions")
    if args.command in quiet and "LOG_LEVEL" not in os.environ:
        level = "WARNING"  # the terminal shows the job's own progress lines instead
    setup_logging(level, settings.secrets())
    try:
        if args.command == "models":
            return cmd_models(settings, args)
        if args.command == "jobs":
            return asyncio.run(cmd_jobs(settings, args))
        if args.command == "migrate":
            return asyncio.run(cmd_migrate(settings))
        if args.command == "sessions":
            return asyncio.run(cmd_sessions(settings, args, open_sessions))
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
        return config_error(args, str(exc))
    except KeyboardInterrupt:
        return 130
