"""The fake Telegram Bot API (tests/fakes/telegram_api.py) in a process of its own, as an
outside Bot API would be, with a small control server for bench.ack:

    python -m bench.tg_server --token T

prints `READY <api port> <control port>` once listening, then serves until killed.

    POST /push?n=100   n groups, each gets "/imagine ..." from one user, all at once;
                       answers [[chat_id, message_id, pushed_at], ...] (time.monotonic()).
    GET  /latencies    waits until each pushed command got its status message, then
                       answers {"acknowledgement": [ms...], "status message": [ms...]}:
                       the first bot call about the command (its reaction, or the reply)
                       and the reply, in ms after the push.

For bench.busy (`--limits on` enforces Telegram's flood limits, tests/fakes RateLimits):

    POST /busy/push    body [{"chat_id", "user_id", "text"}, ...]: each user sends its text
                       in its chat (a group when chat_id < 0, else their private chat), all
                       in one go; answers [[chat_id, message_id], ...].
    GET  /busy/calls   every request the fake received (without file bytes): method,
                       chat_id, message_id, reply_to, text, status, time (time.monotonic()),
                       sent (the message ids it created), throttled (answered 429 by the
                       flood limits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tests.fakes.telegram_api import Call, FakeTelegram, RateLimits

__all__ = ["latencies", "main", "push_commands"]

WAIT_S = 60.0
FIRST_GROUP = -1001000000000


Pushed = list[tuple[dict[str, Any], float]]  # each command's message, when it was pushed


def push_commands(fake: FakeTelegram, n: int) -> Pushed:
    """n groups each get "/imagine ..." from one user, all in one go."""
    user = fake.user(42, "Ann", "ann")
    pushed: Pushed = []
    for i in range(n):
        chat = fake.group(FIRST_GROUP - i, f"group {i}")
        pushed.append(
            (fake.send_text(chat, user, f"/imagine a lighthouse number {i}"), time.monotonic())
        )
    return pushed


async def latencies(fake: FakeTelegram, pushed: Pushed) -> dict[str, list[float]]:
    """Once each command got its status message: ms from its push to the first bot call
    about it (the acknowledgement) and to the status message."""
    out: dict[str, list[float]] = {"acknowledgement": [], "status message": []}
    for message, at in pushed:

        def about(call: Call, message: dict[str, Any] = message) -> bool:
            if str(call.chat_id) != str(message["chat"]["id"]):
                return False
            if call.method == "setMessageReaction":
                return bool(call.params.get("message_id") == message["message_id"])
            reply = call.params.get("reply_parameters") or {}
            return bool(reply.get("message_id") == message["message_id"])

        status = await fake.wait_for("sendMessage", about, timeout=WAIT_S)
        first = min((c for c in fake.calls if about(c)), key=lambda c: c.time)
        out["acknowledgement"].append((first.time - at) * 1000)
        out["status message"].append((status.time - at) * 1000)
    return out


class Control:
    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self.pushed: Pushed = []

    async def push(self, request: web.Request) -> web.Response:
        pushed = push_commands(self.fake, int(request.query.get("n", "100")))
        self.pushed += pushed
        return web.json_response([[m["chat"]["id"], m["message_id"], at] for m, at in pushed])

    async def latencies(self, request: web.Request) -> web.Response:
        return web.json_response(await latencies(self.fake, self.pushed))

    async def busy_push(self, request: web.Request) -> web.Response:
        fake = self.fake
        out = []
        for ask in await request.json():
            chat_id, user_id = int(ask["chat_id"]), int(ask["user_id"])
            user = fake.user(user_id, f"user{user_id}", f"user{user_id}")
            if chat_id < 0:
                chat = fake.chats.get(chat_id) or fake.group(chat_id, f"group {chat_id}")
            else:
                chat = fake.private_chat(user)
            message = fake.send_text(chat, user, str(ask["text"]))
            out.append([chat_id, message["message_id"]])
        return web.json_response(out)

    async def busy_calls(self, request: web.Request) -> web.Response:
        throttled = {id(c) for c in self.fake.throttled}
        return web.json_response([_call_view(c, id(c) in throttled) for c in self.fake.calls])


def _call_view(call: Call, throttled: bool) -> dict[str, Any]:
    params = call.params
    reply = params.get("reply_parameters") or {}
    result = call.result
    if isinstance(result, dict):
        sent = [result.get("message_id")] if "message_id" in result else []
    elif isinstance(result, list):
        sent = [m.get("message_id") for m in result if isinstance(m, dict)]
    else:
        sent = []
    return {
        "method": call.method,
        "chat_id": params.get("chat_id"),
        "message_id": params.get("message_id"),
        "reply_to": reply.get("message_id") if isinstance(reply, dict) else None,
        "text": params.get("text") or params.get("caption"),
        "status": call.status,
        "time": call.time,
        "sent": sent,
        "throttled": throttled,
    }


async def _serve(token: str, limits: bool) -> None:
    async with FakeTelegram(token=token, limits=RateLimits() if limits else None) as fake:
        control = Control(fake)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/push", control.push)
        app.router.add_get("/latencies", control.latencies)
        app.router.add_post("/busy/push", control.busy_push)
        app.router.add_get("/busy/calls", control.busy_calls)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        control_port = int(runner.addresses[0][1])
        print(f"READY {fake.port} {control_port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tg_server", description=__doc__)
    parser.add_argument("--token", required=True)
    parser.add_argument(
        "--limits", choices=("on", "off"), default="off", help="enforce Telegram's flood limits"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.token, args.limits == "on"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
