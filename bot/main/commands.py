"""The verbs of `genrelay` and their options (a contract): the argparse parser."""

from __future__ import annotations

import argparse

__all__ = ["build_parser"]


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
    sub.add_parser("migrate", help="bring DATABASE_URL's schema up to date and print its version")
    discord = sub.add_parser("discord", help="Discord tools")
    dsub = discord.add_subparsers(dest="discord_command", required=True)
    sync = dsub.add_parser("sync", help="register the slash commands with Discord")
    sync.add_argument("--guild", type=int, help="a server id: instant, for testing")
    return parser
