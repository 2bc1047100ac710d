"""FloodControl alone: PTB's rate-limiter interface driven with a recording callback and
small budgets. Nothing here asserts on time, only on order and counts: a budget that must
not refill during a test refills once a minute."""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
from collections import deque
from typing import Any

import pytest
from telegram.error import NetworkError, RetryAfter

from adapters.telegram.flood import FloodControl
from adapters.telegram.lanes import Lane, chat_key, lane_of, status_traffic

GROUP_A, GROUP_B, GROUP_C = -1001, -1002, -1003
PRIVATE = 42
MINUTE = 60.0  # a period that does not end during a test


class Telegram:
    """The callback PTB hands the limiter: records each call, fails on request."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._failures: dict[str, deque[float]] = {}

    def fail_next(self, endpoint: str, retry_after: float, count: int = 1) -> None:
        self._failures.setdefault(endpoint, deque()).extend([retry_after] * count)

    async def __call__(self, endpoint: str, data: dict[str, Any], **kwargs: Any) -> bool:
        self.calls.append((endpoint, data.get("chat_id")))
        failures = self._failures.get(endpoint)
        if failures:
            raise RetryAfter(dtm.timedelta(seconds=failures.popleft()))
        return True

    def count(self, endpoint: str) -> int:
        return sum(1 for e, _ in self.calls if e == endpoint)


def request(
    limiter: FloodControl,
    telegram: Telegram,
    endpoint: str,
    chat_id: int | str | None = None,
    *,
    rate_limit_args: int | None = None,
) -> asyncio.Task[Any]:
    data: dict[str, Any] = {} if chat_id is None else {"chat_id": chat_id, "text": "hi"}
    return asyncio.ensure_future(
        limiter.process_request(
            callback=telegram,
            args=(endpoint, data),
            kwargs={"read_timeout": 5},
            endpoint=endpoint,
            data=data,
            rate_limit_args=rate_limit_args,
        )
    )


async def settle() -> None:
    """Let every request that may go now go, and its callback return."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- lanes -------------------------------------------------------------------------------------


def test_lanes_and_chats() -> None:
    assert lane_of("setMessageReaction", {"chat_id": 1}) is Lane.ACK
    assert lane_of("sendChatAction", {"chat_id": -1}) is Lane.ACK
    assert lane_of("getUpdates", {}) is Lane.FREE
    assert lane_of("answerCallbackQuery", {"callback_query_id": "q"}) is Lane.FREE
    assert lane_of("getChatMember", {"chat_id": -1, "user_id": 2}) is Lane.FREE
    assert lane_of("editMessageText", {"inline_message_id": "x"}) is Lane.FREE
    assert lane_of("sendMessage", {"chat_id": -1}) is Lane.MESSAGE
    assert lane_of("sendPhoto", {"chat_id": 5}) is Lane.RESULT
    assert lane_of("sendMediaGroup", {"chat_id": -1}) is Lane.RESULT
    assert lane_of("editMessageText", {"chat_id": -1}) is Lane.EDIT
    assert lane_of("editMessageReplyMarkup", {"chat_id": -1}) is Lane.EDIT
    assert lane_of("deleteMessage", {"chat_id": -1}) is Lane.EDIT
    with status_traffic():
        assert lane_of("sendMessage", {"chat_id": -1}) is Lane.STATUS
        assert lane_of("editMessageText", {"chat_id": -1}) is Lane.EDIT
        assert lane_of("sendPhoto", {"chat_id": -1}) is Lane.STATUS
    assert chat_key(-1001) == (-1001, True)
    assert chat_key("-1001") == (-1001, True)
    assert chat_key("@channel") == ("@channel", True)
    assert chat_key(42) == (42, False)


# -- priorities --------------------------------------------------------------------------------


@pytest.mark.parametrize("same_chat", [True, False], ids=["same group", "another group"])
async def test_a_new_message_goes_before_waiting_edits(same_chat: bool) -> None:
    # One token; three edits queue, then a message: the message takes the next token.
    if same_chat:
        limiter = FloodControl(overall_max_rate=0, group_max_rate=1, group_time_period=0.05)
    else:
        limiter = FloodControl(overall_max_rate=1, overall_time_period=0.05, group_max_rate=0)
    telegram = Telegram()
    edits = [request(limiter, telegram, "editMessageText", GROUP_A) for _ in range(3)]
    send = request(limiter, telegram, "sendMessage", GROUP_A if same_chat else GROUP_B)

    await asyncio.wait_for(asyncio.gather(*edits, send), 5)

    assert [endpoint for endpoint, _ in telegram.calls] == [
        "editMessageText",
        "sendMessage",
        "editMessageText",
        "editMessageText",
    ]


async def test_a_finished_result_goes_before_new_status_messages() -> None:
    limiter = FloodControl(overall_max_rate=1, overall_time_period=0.05, group_max_rate=0)
    telegram = Telegram()
    sends = [request(limiter, telegram, "sendMessage", GROUP_A) for _ in range(3)]
    photo = request(limiter, telegram, "sendPhoto", GROUP_B)

    await asyncio.wait_for(asyncio.gather(*sends, photo), 5)

    assert [endpoint for endpoint, _ in telegram.calls] == [
        "sendMessage",
        "sendPhoto",
        "sendMessage",
        "sendMessage",
    ]


async def test_an_edit_waiting_for_its_group_holds_back_nobody() -> None:
    limiter = FloodControl(overall_max_rate=100, group_max_rate=1, group_time_period=MINUTE)
    telegram = Telegram()
    first = request(limiter, telegram, "editMessageText", GROUP_A)
    stuck = request(limiter, telegram, "editMessageText", GROUP_A)  # GROUP_A's minute is used
    await settle()
    assert first.done() and not stuck.done()

    elsewhere = [
        request(limiter, telegram, "sendMessage", GROUP_B),
        request(limiter, telegram, "editMessageText", GROUP_C),
        request(limiter, telegram, "sendPhoto", PRIVATE),
    ]
    await asyncio.wait_for(asyncio.gather(*elsewhere), 5)
    assert not stuck.done() and limiter.waiting == 1

    stuck.cancel()  # a caller that gives up leaves the queue
    await settle()
    limiter.dispatch()
    assert limiter.waiting == 0
    assert telegram.count("editMessageText") == 2


async def test_edits_leave_a_quarter_of_a_groups_budget_to_new_messages() -> None:
    limiter = FloodControl(overall_max_rate=100, group_max_rate=8, group_time_period=MINUTE)
    telegram = Telegram()
    edits = [request(limiter, telegram, "editMessageText", GROUP_A) for _ in range(8)]
    await settle()
    assert telegram.count("editMessageText") == 6  # two of the eight tokens stay
    results = [request(limiter, telegram, "sendPhoto", GROUP_A) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(*results), 5)  # a result finds its token
    assert telegram.count("sendPhoto") == 2
    assert sum(e.done() for e in edits) == 6
    for edit in edits:
        edit.cancel()
    await asyncio.gather(*edits, return_exceptions=True)


async def test_waiters_of_one_lane_go_in_arrival_order() -> None:
    limiter = FloodControl(overall_max_rate=1, overall_time_period=0.02, group_max_rate=0)
    telegram = Telegram()
    chats = [GROUP_A, PRIVATE, GROUP_B, "@channel", GROUP_C]
    await asyncio.wait_for(
        asyncio.gather(*(request(limiter, telegram, "sendMessage", c) for c in chats)), 5
    )
    assert [chat for _, chat in telegram.calls] == chats


async def test_a_groups_running_jobs_keep_their_results_tokens_from_status_traffic() -> None:
    # A group with 4 tokens left this minute and 3 jobs running: status traffic (an edit, a
    # new status line, a delete, queued before the results were done) may spend only
    # one token; the three results that come after it all go at once, the status waits.
    limiter = FloodControl(
        overall_max_rate=100, group_max_rate=4, group_time_period=MINUTE, edit_reserve=0
    )
    telegram = Telegram()
    limiter.expect_results(GROUP_A, 3)
    edit = request(limiter, telegram, "editMessageText", GROUP_A)
    with status_traffic():  # the task inherits the mark: a status line
        status = request(limiter, telegram, "sendMessage", GROUP_A)
    delete = request(limiter, telegram, "deleteMessage", GROUP_A)
    await settle()
    assert edit.done() and not status.done() and not delete.done()

    results = [request(limiter, telegram, "sendPhoto", GROUP_A) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*results), 5)
    assert [e for e, _ in telegram.calls] == ["editMessageText", *["sendPhoto"] * 3]
    assert limiter.waiting == 2  # the status traffic waits for the next minute's tokens
    assert limiter.expected_results(GROUP_A) == 3

    limiter.expect_results(GROUP_A, 0)  # the jobs were delivered
    await limiter.shutdown()
    await asyncio.gather(status, delete, return_exceptions=True)


async def test_while_results_flow_status_traffic_leaves_the_next_ones_their_tokens() -> None:
    # 10 messages a minute overall, no quarter kept for new messages: three results went
    # in this window, so status traffic leaves three more tokens free for the results
    # still to come (private chats: no group budget plans for them).
    limiter = FloodControl(
        overall_max_rate=10, overall_time_period=MINUTE, group_max_rate=0, edit_reserve=0
    )
    telegram = Telegram()
    await asyncio.gather(*(request(limiter, telegram, "sendPhoto", PRIVATE + i) for i in range(3)))
    edits = [request(limiter, telegram, "editMessageText", PRIVATE) for _ in range(7)]
    await settle()
    assert telegram.count("editMessageText") == 4  # 10 - 3 sent - 3 kept
    assert not limiter.status_ready(PRIVATE)  # a status delete would wait: not inline
    results = [request(limiter, telegram, "sendPhoto", PRIVATE + 10 + i) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(*results), 5)  # their tokens were there
    assert telegram.count("sendPhoto") == 6
    assert limiter.waiting == 3  # the rest of the edits: the next minute
    await limiter.shutdown()
    await asyncio.gather(*edits, return_exceptions=True)


async def test_replies_to_commands_are_no_status_traffic() -> None:
    limiter = FloodControl(overall_max_rate=100, group_max_rate=2, group_time_period=MINUTE)
    telegram = Telegram()
    limiter.expect_results(GROUP_A, 5)  # more than the budget: all but one token kept
    reply = request(limiter, telegram, "sendMessage", GROUP_A)
    await asyncio.wait_for(reply, 5)  # a plain message is not held back for results
    with status_traffic():
        status = request(limiter, telegram, "sendMessage", GROUP_A)
    await settle()
    assert not status.done()
    await limiter.shutdown()
    await asyncio.gather(status, return_exceptions=True)


async def test_a_turn_is_taken_before_the_text_is_chosen_and_spent_by_the_request() -> None:
    limiter = FloodControl(
        overall_max_rate=100, group_max_rate=2, group_time_period=MINUTE, edit_reserve=0
    )
    telegram = Telegram()
    limiter.expect_results(GROUP_A, 1)
    shown: list[str] = []
    state = {"text": "1st in line"}

    async def show() -> None:
        async with limiter.turn(GROUP_A):
            shown.append(state["text"])  # rendered when its turn came, from the newest state
            data = {"chat_id": GROUP_A, "text": state["text"]}
            await limiter.process_request(
                telegram, ("editMessageText", data), {}, "editMessageText", data, None
            )

    await asyncio.wait_for(show(), 5)  # 2 tokens, 1 held: one status goes
    waiting = asyncio.ensure_future(show())
    await settle()
    assert not waiting.done()
    state["text"] = "Sending to Nano Banana…"  # the job moved on while the edit waited
    limiter.expect_results(GROUP_A, 0)
    await asyncio.wait_for(waiting, 5)
    assert shown == ["1st in line", "Sending to Nano Banana…"]
    assert telegram.count("editMessageText") == 2  # the prepaid token was not taken twice
    third = request(limiter, telegram, "sendPhoto", GROUP_A)
    await settle()
    assert not third.done()  # both tokens were spent: one per status, none twice
    await limiter.shutdown()
    await asyncio.gather(third, return_exceptions=True)


async def test_a_turn_that_sends_nothing_gives_its_token_back() -> None:
    limiter = FloodControl(
        overall_max_rate=100, group_max_rate=2, group_time_period=MINUTE, edit_reserve=0
    )
    telegram = Telegram()
    async with limiter.turn(GROUP_A):
        pass  # the edit was moot when its turn came: nothing went
    async with limiter.turn(GROUP_A):
        data = {"chat_id": GROUP_A, "text": "10%"}
        await limiter.process_request(
            telegram, ("editMessageText", data), {}, "editMessageText", data, None
        )
    photo = request(limiter, telegram, "sendPhoto", GROUP_A)
    await asyncio.wait_for(photo, 5)  # the second of the 2 tokens was still free
    assert telegram.calls == [("editMessageText", GROUP_A), ("sendPhoto", GROUP_A)]
    await limiter.shutdown()


async def test_an_album_counts_one_message_per_item() -> None:
    """Telegram counts each item of a sendMediaGroup toward its limits."""
    limiter = FloodControl(
        overall_max_rate=100, group_max_rate=4, group_time_period=MINUTE, edit_reserve=0
    )
    telegram = Telegram()
    await asyncio.wait_for(request(limiter, telegram, "sendMessage", GROUP_A), 5)
    media = {"chat_id": GROUP_A, "media": ["a", "b", "c", "d"]}
    album = asyncio.ensure_future(
        limiter.process_request(
            telegram, ("sendMediaGroup", media), {}, "sendMediaGroup", media, None
        )
    )
    await settle()
    assert not album.done()  # 4 items do not fit in the 3 messages left of the minute
    single = request(limiter, telegram, "sendMessage", GROUP_B)
    await asyncio.wait_for(single, 5)  # another group's budget is its own
    await limiter.shutdown()
    await asyncio.gather(album, return_exceptions=True)
    assert telegram.count("sendMediaGroup") == 0


# -- budgets -----------------------------------------------------------------------------------


async def test_the_overall_burst_is_respected() -> None:
    limiter = FloodControl(overall_max_rate=3, overall_time_period=MINUTE, group_max_rate=0)
    telegram = Telegram()
    sends = [request(limiter, telegram, "sendMessage", PRIVATE + i) for i in range(5)]
    await settle()
    assert telegram.count("sendMessage") == 3 and sum(t.done() for t in sends) == 3
    assert limiter.waiting == 2
    await limiter.shutdown()
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert [type(r) for r in results[3:]] == [NetworkError, NetworkError]  # retried later


async def test_a_group_burst_is_its_own() -> None:
    limiter = FloodControl(overall_max_rate=0, group_max_rate=2, group_time_period=MINUTE)
    telegram = Telegram()
    in_a = [request(limiter, telegram, "sendMessage", GROUP_A) for _ in range(4)]
    in_b = request(limiter, telegram, "sendMessage", GROUP_B)
    private = [request(limiter, telegram, "sendMessage", PRIVATE) for _ in range(3)]
    await settle()
    assert sum(t.done() for t in in_a) == 2
    assert in_b.done() and all(t.done() for t in private)  # no per-chat budget in private
    for task in in_a:
        task.cancel()


async def test_acknowledgements_never_wait() -> None:
    limiter = FloodControl(overall_max_rate=1, overall_time_period=MINUTE, group_max_rate=1)
    telegram = Telegram()
    sends = [request(limiter, telegram, "sendMessage", GROUP_A) for _ in range(2)]
    await settle()
    assert limiter.waiting == 1  # the bot's and the group's budgets are spent

    acks = [
        request(limiter, telegram, "setMessageReaction", GROUP_A),
        request(limiter, telegram, "sendChatAction", GROUP_A),
        request(limiter, telegram, "setMessageReaction", GROUP_B),
    ]
    await asyncio.wait_for(asyncio.gather(*acks), 5)
    assert limiter.waiting == 1
    sends[1].cancel()


async def test_requests_without_a_chat_and_reads_pass_straight_through() -> None:
    limiter = FloodControl(overall_max_rate=1, overall_time_period=MINUTE, max_retries=1)
    telegram = Telegram()
    await request(limiter, telegram, "sendMessage", GROUP_A)  # the minute's only token
    telegram.fail_next("getFile", retry_after=0.01)
    free = [
        request(limiter, telegram, "getFile"),
        request(limiter, telegram, "answerCallbackQuery"),
        request(limiter, telegram, "getChatMember", GROUP_A),
    ]
    await asyncio.wait_for(asyncio.gather(*free), 5)
    assert telegram.count("getFile") == 2  # its RetryAfter was waited out and retried


# -- RetryAfter --------------------------------------------------------------------------------


async def test_retry_after_is_retried_then_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    limiter = FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=2)
    telegram = Telegram()

    telegram.fail_next("sendPhoto", retry_after=0.01)
    assert await asyncio.wait_for(request(limiter, telegram, "sendPhoto", GROUP_A), 5) is True
    assert telegram.count("sendPhoto") == 2

    telegram.fail_next("sendDocument", retry_after=0.01, count=3)
    with pytest.raises(RetryAfter):
        await asyncio.wait_for(request(limiter, telegram, "sendDocument", GROUP_A), 5)
    assert telegram.count("sendDocument") == 3  # the first try and max_retries more

    telegram.fail_next("sendVideo", retry_after=0.01, count=3)
    with pytest.raises(RetryAfter):  # rate_limit_args: this request's own retries
        await request(limiter, telegram, "sendVideo", GROUP_A, rate_limit_args=0)
    assert telegram.count("sendVideo") == 1

    messages = [r.getMessage() for r in caplog.records]
    assert "telegram: flood control on sendPhoto in chat -1001; chat paused 0.1 s (retry 1)" in (
        messages
    )
    assert "telegram: flood control on sendDocument in chat -1001; gave up after 2 retries" in (
        messages
    )


async def test_retry_after_pauses_only_its_chat() -> None:
    limiter = FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=1)
    telegram = Telegram()
    telegram.fail_next("sendPhoto", retry_after=MINUTE)
    result = request(limiter, telegram, "sendPhoto", GROUP_A)
    await settle()
    assert telegram.count("sendPhoto") == 1 and limiter.waiting == 1  # paused for a minute

    later_in_a = request(limiter, telegram, "sendMessage", GROUP_A)
    elsewhere = [
        request(limiter, telegram, "sendMessage", GROUP_B),
        request(limiter, telegram, "editMessageText", PRIVATE),
    ]
    await asyncio.wait_for(asyncio.gather(*elsewhere), 5)
    assert not later_in_a.done() and limiter.waiting == 2
    await limiter.shutdown()
    for task in (result, later_in_a):
        with pytest.raises(NetworkError):
            await task


async def test_retry_after_of_an_acknowledgement_goes_to_the_caller() -> None:
    limiter = FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=3)
    telegram = Telegram()
    telegram.fail_next("setMessageReaction", retry_after=MINUTE)
    with pytest.raises(RetryAfter):
        await asyncio.wait_for(request(limiter, telegram, "setMessageReaction", GROUP_A), 5)
    assert telegram.count("setMessageReaction") == 1  # never retried
    await asyncio.wait_for(request(limiter, telegram, "sendMessage", GROUP_A), 5)  # not paused


# -- memory ------------------------------------------------------------------------------------


async def test_idle_chats_are_forgotten_busy_ones_kept() -> None:
    limiter = FloodControl(
        overall_max_rate=0, group_max_rate=2, group_time_period=MINUTE, max_idle_chats=4
    )
    telegram = Telegram()
    await request(limiter, telegram, "sendMessage", GROUP_A)  # one of its two this minute
    for i in range(20):  # private chats have no budget: idle once answered
        await request(limiter, telegram, "sendMessage", PRIVATE + i)
        assert limiter.chats <= 4
    # GROUP_A's budget was not forgotten: one more goes, the next waits.
    again = [request(limiter, telegram, "sendMessage", GROUP_A) for _ in range(2)]
    await settle()
    assert [t.done() for t in again] == [True, False]
    again[1].cancel()


# -- windows -----------------------------------------------------------------------------------


def test_a_window_lets_no_more_than_its_capacity_through_in_any_period() -> None:
    """Telegram counts messages in any minute; a token bucket of the same size would let a
    full burst and then its refill through within one window (twice the budget)."""
    from adapters.telegram.window import SlidingWindow

    window = SlidingWindow(capacity=20, period=60.0)
    sent: list[float] = []
    now = 0.0
    while now < 300.0:  # send greedily whenever the window allows, for five minutes
        wait = window.ready_in(now)
        if wait == 0:
            window.settle(window.spend(now), now)  # answered at once
            sent.append(now)
            now += 0.5
        else:
            now += wait
    assert len(sent) == 100  # 20 a minute, not 20 at once plus one every 3 s
    most = max(sum(1 for t in sent if start <= t < start + 60.0) for start in sent)
    assert most == 20


def test_a_window_keeps_what_running_jobs_need_for_their_results() -> None:
    from adapters.telegram.window import SlidingWindow

    window = SlidingWindow(capacity=3, period=10.0)
    window.settle(window.spend(0.0), 0.0)
    assert window.ready_in(1.0, hold=1) == 0  # two left: one for status, one kept
    window.settle(window.spend(1.0), 1.0)
    assert window.ready_in(2.0, hold=1) == pytest.approx(8.0)  # the last is the result's
    assert window.ready_in(2.0) == 0  # ... which a result may take
    assert not window.full(9.0) and window.full(11.0)


def test_a_window_counts_a_slow_request_from_when_it_was_answered() -> None:
    """Telegram counted it somewhere between our letting it go and its answer: the window
    frees its place one period after the answer, never earlier."""
    from adapters.telegram.window import SlidingWindow

    window = SlidingWindow(capacity=1, period=10.0)
    slot = window.spend(0.0)
    window.settle(slot, 3.0)  # the request took 3 s to be answered
    assert window.ready_in(10.0) == pytest.approx(3.0)
    assert window.ready_in(13.0) == 0


def test_a_request_in_flight_counts_until_it_is_answered() -> None:
    """However long it takes to get there: Telegram may count it at any moment until its
    answer comes."""
    from adapters.telegram.window import IN_FLIGHT_WAIT_S, SlidingWindow

    window = SlidingWindow(capacity=2, period=1.0)
    slot = window.spend(0.0)
    window.settle(window.spend(0.0), 0.0)
    assert window.ready_in(1.5) == 0  # the answered one left; the one in flight counts
    window.spend(1.5)
    assert window.ready_in(5.0) == IN_FLIGHT_WAIT_S  # both in flight: none may go
    window.settle(slot, 5.0)
    assert window.ready_in(5.5) == pytest.approx(0.5)  # counted from its answer
    window.release(window.in_flight[0])  # never went
    assert window.ready_in(5.5) == 0
