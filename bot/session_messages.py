"""The words of creative sessions: their card, recap, credits, votes and refusals. Re-exported
by bot/messages.py (every sentence a chat user reads is reachable there); kept in a module of
their own so neither grows past one screenful of nouns. Imports nothing of bot/messages.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from bot.community import Refusal
from bot.models import Kind
from bot.sessions import Entry, Recap, Session, SessionFigures, VoteOutcome

__all__ = [
    "NOT_AN_ENTRY",
    "NOT_ENDER",
    "NO_SESSION",
    "NO_THEME",
    "OWN_ENTRY",
    "SESSION_OPTIONS",
    "SESSION_TOO_LONG",
    "SESSION_TOO_SHORT",
    "SESSION_USAGE",
    "THEME_TOO_LONG",
    "VIDEOS_OFF",
    "entry_credit",
    "entry_label",
    "gallery_link_text",
    "history_mark",
    "missing_value_text",
    "no_gallery_hint",
    "not_starter_text",
    "option_value_text",
    "recap_figures_text",
    "recap_headline",
    "recap_text",
    "session_budget_over_chat_text",
    "session_card_text",
    "session_ended_text",
    "session_exists_text",
    "session_limit_text",
    "session_over_text",
    "unknown_option_text",
    "vote_text",
]

SESSION_USAGE = "/session start <theme> [--for 30m] [--budget 5] [--per-person 5] [--video on|off]"
SESSION_OPTIONS = ("--for", "--budget", "--per-person", "--video")
NO_THEME = f"Give the session a theme: {SESSION_USAGE}"
THEME_TOO_LONG = "That theme is too long; keep it under 200 characters."
SESSION_TOO_SHORT = "A session lasts at least 1 minute."
SESSION_TOO_LONG = "A session lasts at most 7 days."
NO_SESSION = "There is no session running here. Start one with /session start <theme>."
NOT_ENDER = "Only the person who started the session or an admin can end it."
NOT_AN_ENTRY = "That is not a session entry, so it takes no votes."
OWN_ENTRY = "You can't vote for your own entry."
VIDEOS_OFF = "Videos are off in this session."

_VALUES = {
    "--for": "--for takes a duration from 1 minute to 7 days, like 90s, 30m, 2h or 1d.",
    "--budget": "--budget takes an amount in USD above 0, e.g. --budget 5 or --budget 2.50.",
    "--per-person": "--per-person takes a whole number from 1 to 1,000, e.g. --per-person 5.",
    "--video": "--video takes on or off.",
}


def _n(n: int, one: str, many: str | None = None) -> str:
    """'1 entry', '2 entries': `many` when the plural is not `one` + s."""
    return f"{n} {one}" if n == 1 else f"{n} {many or one + 's'}"


def _entries(n: int) -> str:
    return _n(n, "entry", "entries")


def _people(n: int) -> str:
    return _n(n, "person", "people")


def _quoted(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return f"“{text if len(text) <= limit else text[: limit - 1].rstrip() + '…'}”"


def _at(ts: float, now: float) -> str:
    """'14:30 UTC', with the date when it is not within a day of `now`: '3 Mar 14:30 UTC'."""
    when = datetime.fromtimestamp(ts, UTC)
    if abs(ts - now) < 86400:
        return when.strftime("%H:%M UTC")
    return f"{when.day} {when.strftime('%b %H:%M')} UTC"


def _left(seconds: float) -> str:
    """Time left in whole minutes, rounded up: '23 min', '2 h 5 min', '3 d 4 h'."""
    minutes = max(math.ceil(seconds / 60), 1)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


# -- starting and ending ----------------------------------------------------------------------


def unknown_option_text(option: str) -> str:
    return f"There is no option “{option}”. Options: {', '.join(SESSION_OPTIONS)}."


def option_value_text(option: str) -> str:
    """What an option takes, after a value it cannot."""
    return _VALUES[option]


def missing_value_text(option: str) -> str:
    return f"{option} needs a value. {_VALUES[option]}"


def not_starter_text() -> str:
    return (
        "Only this chat's admins can start a session here. "
        "An admin can let everyone: /settings session_starters everyone."
    )


def session_exists_text(session: Session, now: float) -> str:
    return (
        f"There is already a session here: {_quoted(session.theme)}, "
        f"until {_at(session.ends_at, now)}."
    )


def session_budget_over_chat_text(chat_budget_usd: float) -> str:
    return (
        f"This chat's daily budget is ${chat_budget_usd:.2f}, "
        "so a session's budget can be at most that."
    )


def session_over_text(session: Session) -> str:
    """/session end worked."""
    return (
        f"🏁 The session {_quoted(session.theme)} has ended. Entries still running will "
        "finish and count; the recap follows."
    )


def session_ended_text(theme: str) -> str:
    """A vote (or anything else) for a session that is over."""
    return f"That session ({_quoted(theme)}) has ended."


def session_limit_text(refusal: Refusal, kind: Kind, price_usd: float | None) -> str:
    """A request over one of the running session's rules (Refusal `session_*`)."""
    if refusal.limit == "session_video":
        return VIDEOS_OFF
    if refusal.limit == "session_per_person":
        return f"You have made {_entries(int(refusal.used))}, this session's limit."
    left = max(refusal.allowed - refusal.used, 0)
    words = f"This session's budget (${refusal.allowed:.2f}) is spent."
    if left >= 0.01:
        words += f" ${left:.2f} is left, and this {kind.value} costs about ${price_usd or 0:.2f}."
    return words


# -- the card ---------------------------------------------------------------------------------


def _rules(session: Session) -> str:
    parts = []
    if session.budget_usd is not None:
        parts.append(f"${session.budget_usd:.2f} budget")
    if session.per_person is not None:
        parts.append(f"{_entries(session.per_person)} per person")
    if not session.video:
        parts.append("no videos")
    return "Rules: " + (" · ".join(parts) if parts else "the chat's usual limits") + "."


def _figures(f: SessionFigures) -> str:
    return (
        f"{_entries(f.entries)} by {_people(f.people)} · {_n(f.votes, 'vote')}"
        f" · ${f.spent_usd:.2f} spent"
    )


def session_card_text(figures: SessionFigures, now: float) -> str:
    """The session card: theme, time left (or when it ended), figures, rules."""
    s = figures.session
    lines = [f"🎨 Session: {_quoted(s.theme, 200)}"]
    if s.open and s.ends_at > now:
        lines.append(f"⏳ {_left(s.ends_at - now)} left (until {_at(s.ends_at, now)})")
    else:
        lines.append(f"🏁 Ended at {_at(s.ended_at or s.ends_at, now)}")
    lines.append(f"🖼 {_figures(figures)}")
    if s.open and s.ends_at > now:
        lines.append(_rules(s))
        lines.append("Every /imagine and /video here is an entry; vote with the button under each.")
    return "\n".join(lines)


# -- entries, votes, history ------------------------------------------------------------------


def _author(entry: Entry) -> str:
    return entry.author_name or entry.author_id


def _remix(entry: Entry) -> str:
    if entry.remix_of is None:
        return ""
    return f"remix of #{entry.remix_of} by {entry.remix_of_author or 'someone'}"


def entry_label(entry: Entry) -> str:
    """Above an entry's result: '#3', or '#3 · remix of #1 by Ann'."""
    remix = _remix(entry)
    return f"#{entry.number} · {remix}" if remix else f"#{entry.number}"


def entry_credit(entry: Entry) -> str:
    """An entry in the recap: '#3 by Ann: “prompt” · 4 votes · remix of #1 by Bob'."""
    words = f"#{entry.number} by {_author(entry)}: {_quoted(entry.job.prompt)} · "
    words += _n(entry.votes, "vote")
    remix = _remix(entry)
    return f"{words} · {remix}" if remix else words


def vote_text(outcome: VoteOutcome) -> str:
    """What a vote button press did (for its pop-up answer)."""
    if outcome.counted:
        return f"👍 Your vote for #{outcome.entry} counts ({_n(outcome.votes, 'vote')})."
    return f"Your vote for #{outcome.entry} is taken back ({_n(outcome.votes, 'vote')})."


def history_mark(theme: str, number: int) -> str:
    """/history: a job that is a session entry."""
    return f"🎨 #{number} in {_quoted(theme, 40)}"


# -- the recap and the gallery ----------------------------------------------------------------


def recap_headline(session: Session) -> str:
    return f"🏁 The session {_quoted(session.theme, 200)} is over!"


def recap_figures_text(figures: SessionFigures) -> str:
    """'12 entries by 5 people, $1.80 spent.'"""
    f = figures
    return f"{_entries(f.entries)} by {_people(f.people)}, ${f.spent_usd:.2f} spent."


def no_gallery_hint(session: Session) -> str:
    return (
        "Set PUBLIC_BASE_URL to get a gallery link, or run "
        f"`genrelay sessions export {session.id} DIR`."
    )


def gallery_link_text(session: Session, url: str | None) -> str:
    """/session gallery, and the recap's last line."""
    if url is None:
        return no_gallery_hint(session)
    return f"🖼 Every entry of {_quoted(session.theme)}: {url}"


def recap_text(recap: Recap) -> str:
    """The recap message: headline, figures, the top entries' credits, the gallery."""
    session = recap.figures.session
    lines = [recap_headline(session), recap_figures_text(recap.figures)]
    if recap.top:
        lines.append("")
        lines += [entry_credit(e) for e in recap.top]
    else:
        lines.append("Nothing was made this time.")
    lines += ["", gallery_link_text(session, recap.gallery_url)]
    return "\n".join(lines)
