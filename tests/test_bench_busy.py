"""bench.busy's bookkeeping: which of the bot's messages belong to which job, and which
status edits were stale (deterministic: scripted calls, no run)."""

from __future__ import annotations

from typing import Any

from bench.busy import line_place, measure, status_rank

CHAT = -100
OFFSET = 1_000_000.0  # wall time minus monotonic time


def _job(job_id: str, request: int, status: int, task: str, submitted: float) -> dict[str, Any]:
    return {
        "id": job_id,
        "kind": "image",
        "chat_id": str(CHAT),
        "origin_message_id": str(request),
        "status_message_id": str(status),
        "upstream_task_id": task,
        "submitted_at": submitted + OFFSET,  # the store's clock is wall time
        "delivery": "delivered",
    }


def _call(
    method: str,
    at: float,
    *,
    reply_to: int | None = None,
    message_id: int | None = None,
    text: str | None = None,
    sent: tuple[int, ...] = (),
    status: int = 200,
    throttled: bool = False,
) -> dict[str, Any]:
    return {
        "method": method,
        "chat_id": CHAT,
        "message_id": message_id,
        "reply_to": reply_to,
        "text": text,
        "status": status,
        "time": at,
        "sent": list(sent),
        "throttled": throttled,
    }


LINE = "⏳ In line for Nano Banana: 1st in this chat. It starts when a slot frees up."
WAITING = "⏳ Waiting in Nano Banana's queue…"


def _bar(pct: int) -> str:
    return f"🎨 Nano Banana ▰▰▱▱ {pct}%"


def test_status_ranks_follow_a_job_along() -> None:
    texts = [LINE, "⏳ Queued on Nano Banana…", "⏳ Sending to Nano Banana…", WAITING]
    texts += [_bar(5), _bar(60), "✅ Nano Banana finished. Sending the result…"]
    ranks = [status_rank(t) for t in texts]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks) - 1  # "In line" and "Queued on": both received
    assert (line_place(LINE), line_place(LINE.replace("1st", "12th")), line_place(WAITING)) == (
        1,
        12,
        None,
    )
    assert status_rank("Something went wrong") is None


def test_messages_delays_429s_and_stale_edits_per_job() -> None:
    # Job a: request 1, status 2; submitted at 10, done upstream at 30.
    # Job b: request 3, status 4 (same chat); submitted at 12, done at 40.
    jobs = [_job("a", 1, 2, "ta", 10.0), _job("b", 3, 4, "tb", 12.0)]
    tasks = {
        "ta": {"done_at": 30.0, "polls": 3, "finished": 31.5},  # a poll saw it at 31.5
        "tb": {"done_at": 40.0, "polls": 5},
    }
    calls = [
        _call("sendMessage", 1.0, reply_to=1, text=LINE, sent=(2,)),
        _call("sendMessage", 1.1, reply_to=3, text="⏳ Queued on Nano Banana…", sent=(4,)),
        _call("editMessageText", 1.5, message_id=4, text=LINE),  # received either way: fine
        _call("editMessageText", 1.6, message_id=4, text=LINE.replace("1st", "2nd")),  # (c)
        _call("editMessageText", 9.0, message_id=2, text=WAITING),  # before submit: fine
        _call("editMessageText", 13.0, message_id=4, text=LINE),  # (a) after b's submit
        _call("editMessageText", 20.0, message_id=2, text=_bar(50)),
        _call("editMessageText", 21.0, message_id=2, text=_bar(40)),  # (c) went backwards
        _call("editMessageText", 31.0, message_id=2, text=_bar(99)),  # (b) after done
        _call("editMessageText", 31.5, message_id=4, text=_bar(70), throttled=True, status=429),
        _call("sendPhoto", 32.0, reply_to=1, status=429, throttled=True),
        _call("sendPhoto", 34.0, reply_to=1, sent=(5,)),
        _call("sendDocument", 34.5, reply_to=5, sent=(6,)),  # the original, under the photo
        _call("deleteMessage", 35.0, message_id=2),
        _call("sendPhoto", 41.0, reply_to=3, sent=(7,)),
        _call("deleteMessage", 41.5, message_id=4),
        _call("setMessageReaction", 0.5, message_id=1),  # not a message: status 200, no job
    ]
    a, b = sorted(measure(jobs, calls, tasks, OFFSET), key=lambda s: s.job_id)

    assert a.delay_s == 4.0  # accepted upload at 34, done at 30 (the 429'd one is no upload)
    assert b.delay_s == 1.0
    assert (a.seen_s, b.seen_s) == (1.5, None)  # b's task does not say when it was seen
    assert (a.result_msgs, b.result_msgs) == (2, 1)
    # status post, edits at 9/20/21/31 and the delete; the reaction is no job's message
    assert a.status_msgs == 6
    assert b.status_msgs == 5  # the 429'd edit is not a message
    assert (a.throttled, b.throttled) == (1, 1)
    assert (a.polls, b.polls) == (3, 5)
    assert a.stale_texts == [_bar(40), _bar(99)]
    assert b.stale_texts == [LINE.replace("1st", "2nd"), LINE]
    assert (a.stale, b.stale) == (2, 2)
    assert a.stale_by == {"a": 0, "b": 1, "c": 1}
    assert b.stale_by == {"a": 1, "b": 0, "c": 1}
    assert a.delivered and b.delivered
