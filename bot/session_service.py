"""Use cases of creative sessions: start, show, end, vote, and what the recap, the gallery and
/history read. Exposed as `core.sessions`; adapters call it and word its values with
bot/messages.py. Entries themselves are made by `Service.submit` (the store admits a job
where a session runs as its next entry); the loop that ends sessions, keeps their cards and
posts their recaps is bot/session_keeper.py."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Collection

from bot import messages
from bot.config import Settings
from bot.constants import (
    MAX_CHAT_BUDGET_USD,
    SESSION_DEFAULT_S,
    SESSION_MAX_PER_PERSON,
    SESSION_MAX_S,
    SESSION_MIN_S,
)
from bot.errors import RequestRejected
from bot.media import MediaStore, prune_results
from bot.models import JobState, Origin, new_job_id
from bot.ports import Clock, SessionStore
from bot.service import Service
from bot.sessions import (
    MAX_RECAP_ENTRIES,
    Entry,
    GalleryPage,
    Recap,
    Session,
    SessionFigures,
    SessionSpec,
    VoteOutcome,
    VoteRefusal,
)
from bot.validation import clean_text

__all__ = ["SESSION_ID_LENGTH", "SessionService", "parse_start"]

log = logging.getLogger(__name__)

SESSION_ID_LENGTH = 8  # shown to people ("genrelay sessions export k3f9abcd DIR")
GALLERY_KEY_BYTES = 18  # token_urlsafe bytes of a gallery's unguessable address
MAX_THEME_CHARS = 200

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:[0-9]{1,7}(?:s|min|m|h|d))+")
_DURATION_PART = re.compile(r"([0-9]{1,7})(s|min|m|h|d)")
_USD = re.compile(r"\$?([0-9]{0,6})(?:\.([0-9]{1,2}))?")
_DASHES = "-\u2013\u2014"  # phones turn "--" into an en or em dash


def _duration(value: str) -> float | None:
    """Seconds from '90s', '30m', '2h', '1d', '1h30m'; a bare number is minutes."""
    value = value.lower()
    if value.isascii() and value.isdigit() and len(value) <= 7:
        return int(value) * 60.0
    if not _DURATION.fullmatch(value):
        return None
    return float(sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(value)))


def _usd(value: str) -> float | None:
    match = _USD.fullmatch(value)
    if match is None or not (match[1] or match[2]):
        return None
    cents = int(match[1] or 0) * 100 + int((match[2] or "").ljust(2, "0"))
    return cents / 100 if 0 < cents <= MAX_CHAT_BUDGET_USD * 100 else None


def _option_value(option: str, value: str) -> float | int | bool | None:
    """The option's value from what was typed, or None when it takes no such value."""
    if option == "--for":
        return _duration(value)
    if option == "--budget":
        return _usd(value)
    if option == "--per-person":
        ok = value.isascii() and value.isdigit() and 1 <= int(value) <= SESSION_MAX_PER_PERSON
        return int(value) if ok else None
    lowered = value.lower()
    if lowered in ("on", "yes", "true", "1"):
        return True
    return False if lowered in ("off", "no", "false", "0") else None


def _option(token: str) -> tuple[str, str] | None:
    """('--for', '') from '--for', '—for' or '--FOR'; ('--for', '30m') from '--for=30m';
    None for a word of the theme ('-5', '—', 'well-known')."""
    name, _, inline = token.partition("=")
    bare = name.lstrip(_DASHES)
    if not bare or name[0] not in _DASHES or (name.startswith("-") and name[1:2] != "-"):
        return None
    return "--" + bare.lower().replace("_", "-"), inline


def parse_start(text: str) -> SessionSpec:
    """`<theme> [--for 30m] [--budget 5] [--per-person 5] [--video on|off]`, as typed after
    `/session start`. Raises RequestRejected in words for anything it cannot take."""
    tokens = clean_text(text).split()
    theme: list[str] = []
    values: dict[str, float | int | bool] = {}
    i = 0
    while i < len(tokens):
        parsed = _option(tokens[i])
        if parsed is None:
            theme.append(tokens[i])
            i += 1
            continue
        option, inline = parsed
        if option not in messages.SESSION_OPTIONS:
            raise RequestRejected(messages.unknown_option_text(option), code="session_option")
        if not inline and i + 1 >= len(tokens):
            raise RequestRejected(messages.missing_value_text(option), code="session_option")
        value = _option_value(option, inline or tokens[i + 1])
        if value is None:
            raise RequestRejected(messages.option_value_text(option), code="session_option")
        values[option] = value
        i += 1 if inline else 2
    joined = " ".join(theme)
    if not joined:
        raise RequestRejected(messages.NO_THEME, code="session_theme")
    if len(joined) > MAX_THEME_CHARS:
        raise RequestRejected(messages.THEME_TOO_LONG, code="session_theme")
    duration = float(values.get("--for", SESSION_DEFAULT_S))
    if duration < SESSION_MIN_S:
        raise RequestRejected(messages.SESSION_TOO_SHORT, code="session_duration")
    if duration > SESSION_MAX_S:
        raise RequestRejected(messages.SESSION_TOO_LONG, code="session_duration")
    budget, per_person = values.get("--budget"), values.get("--per-person")
    return SessionSpec(
        theme=joined,
        duration_s=duration,
        budget_usd=float(budget) if budget is not None else None,
        per_person=int(per_person) if per_person is not None else None,
        video=bool(values.get("--video", True)),
    )


PRUNE_SCAN = 1000  # the newest sessions looked at for files past GALLERY_KEEP_DAYS


class SessionService:
    """Creative sessions, for every platform. `on_change` is called when a session started
    or ended (the session loop wakes to show its card or post its recap)."""

    def __init__(
        self,
        store: SessionStore,
        service: Service,
        media: MediaStore,
        clock: Clock,
        settings: Settings,
        *,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.service = service
        self.media = media
        self.clock = clock
        self.settings = settings
        self.on_change = on_change

    parse_start = staticmethod(parse_start)

    def _may_lead(self, origin: Origin, is_admin: bool) -> bool:
        return is_admin or self.service.is_operator(origin)

    async def start(self, origin: Origin, spec: SessionSpec, *, is_admin: bool) -> Session:
        """Start a session at the origin's place (its chat, or its thread). Who may is the
        chat's `session_starters` setting; a session budget must fit the chat's."""
        rules = await self.service.rules(origin)
        if rules.session_starters != "everyone" and not self._may_lead(origin, is_admin):
            raise RequestRejected(messages.not_starter_text(), code="not_admin")
        if rules.chat_budget_usd and (spec.budget_usd or 0) > rules.chat_budget_usd:
            raise RequestRejected(
                messages.session_budget_over_chat_text(rules.chat_budget_usd),
                code="session_budget",
            )
        now = self.clock.now()
        session = Session(
            id=new_job_id()[:SESSION_ID_LENGTH],
            gallery_key=secrets.token_urlsafe(GALLERY_KEY_BYTES),
            platform=origin.platform,
            chat_id=origin.chat_id,
            thread_id=origin.thread_id,
            scope_id=origin.scope_id,
            theme=spec.theme,
            started_by=origin.user_id,
            started_by_name=origin.user_name,
            started_at=now,
            ends_at=now + spec.duration_s,
            budget_usd=spec.budget_usd,
            per_person=spec.per_person,
            video=spec.video,
        )
        running = await self.store.create_session(session)
        if running is not None:
            raise RequestRejected(
                messages.session_exists_text(running, now), code="session_running"
            )
        log.info(
            "session %s: started in %s chat %s by %s for %d s",
            session.id,
            origin.platform,
            origin.chat_id,
            origin.user_id,
            spec.duration_s,
        )
        self.on_change()
        return session

    async def _running(self, origin: Origin) -> Session | None:
        return await self.store.open_session(
            origin.platform, origin.chat_id, origin.thread_id, self.clock.now()
        )

    async def current(self, origin: Origin) -> SessionFigures | None:
        """/session: the session running here, with its figures; None when there is none."""
        session = await self._running(origin)
        return None if session is None else await self.store.session_figures(session.id)

    async def end(self, origin: Origin, *, is_admin: bool) -> Session:
        """/session end: by its starter or an admin. Entries still running finish and
        count; the session loop posts the recap once."""
        session = await self._running(origin)
        if session is None:
            raise RequestRejected(messages.NO_SESSION, code="no_session")
        if origin.user_id != session.started_by and not self._may_lead(origin, is_admin):
            raise RequestRejected(messages.NOT_ENDER, code="not_admin")
        if not await self.store.close_session(session.id, self.clock.now(), origin.user_id):
            raise RequestRejected(messages.NO_SESSION, code="no_session")  # ended meanwhile
        log.info("session %s: ended by %s", session.id, origin.user_id)
        self.on_change()
        ended = await self.store.get_session(session.id)
        assert ended is not None
        return ended

    async def vote(self, job_id: str, voter: Origin) -> VoteOutcome:
        """A vote button pressed under an entry's result: counts, or is taken back when it
        counted. Refuses one's own entries, other chats' and those of a session that ended."""
        entry = await self.store.entry_for_job(job_id)
        session = await self.store.get_session(entry.session_id or "") if entry else None
        if entry is None or session is None:
            raise RequestRejected(messages.NOT_AN_ENTRY, code="not_an_entry")
        if (session.platform, session.scope_id) != (voter.platform, voter.scope_id):
            raise RequestRejected(messages.OTHER_CHAT, code="other_chat")
        outcome = await self.store.toggle_vote(job_id, voter.user_id, self.clock.now())
        if isinstance(outcome, VoteRefusal):
            if outcome.reason == "ended":
                words = messages.session_ended_text(outcome.theme or session.theme)
                raise RequestRejected(words, code="session_ended")
            if outcome.reason == "own":
                raise RequestRejected(messages.OWN_ENTRY, code="own_entry")
            raise RequestRejected(messages.NOT_AN_ENTRY, code="not_an_entry")
        return outcome

    # -- what the recap, the gallery and /history read ---------------------------------------

    async def get(self, session_id: str) -> Session | None:
        return await self.store.get_session(session_id)

    async def entries(self, session_id: str) -> list[Entry]:
        """Every entry (but cancelled or refused ones), in number order."""
        return await self.store.session_entries(session_id)

    async def entry_for_job(self, job_id: str) -> Entry | None:
        """The entry a job is, if it is one: for its label ("#3 · remix of #1 by Ann") and
        its vote button."""
        return await self.store.entry_for_job(job_id)

    async def entry_numbers(self, job_ids: Collection[str]) -> dict[str, tuple[str, int]]:
        """/history marks: {job id: (session theme, entry number)} for the entries."""
        return await self.store.entry_numbers(job_ids)

    async def list_sessions(self, limit: int = 100) -> list[SessionFigures]:
        """`genrelay sessions`: newest first, with figures."""
        return await self.store.list_sessions(limit)

    def gallery_url(self, session: Session) -> str | None:
        """PUBLIC_BASE_URL/sessions/<gallery key>; None without PUBLIC_BASE_URL."""
        base = self.settings.public_base_url
        return f"{base.rstrip('/')}/sessions/{session.gallery_key}" if base else None

    async def recap(self, session: Session) -> Recap:
        """The top entries with a result (most votes, then earliest) and the figures."""
        figures = await self.store.session_figures(session.id)
        assert figures is not None
        made = [e for e in await self.entries(session.id) if _made(e)]
        top = sorted(made, key=lambda e: (-e.votes, e.number))[:MAX_RECAP_ENTRIES]
        return Recap(
            figures=figures,
            top=tuple(top),
            gallery_url=self.gallery_url(session),
            files={e.number: self._files(e) for e in top},
        )

    def _files(self, entry: Entry) -> tuple[str, ...]:
        """Names of our kept copies of the entry's results, under MediaStore.results_dir."""
        names = []
        for index in range(len(entry.job.result_urls)):
            path = self.media.local_result(entry.job.id, index)
            if path is not None:
                names.append(path.name)
        return tuple(names)

    async def prune_galleries(self, now: float) -> int:
        """Delete the kept result files of sessions that ended more than GALLERY_KEEP_DAYS
        ago (their gallery then shows placeholders). Returns how many files went."""
        before = now - self.settings.gallery_keep_s
        deleted = 0
        for figures in await self.store.list_sessions(PRUNE_SCAN):
            ended = figures.session.ended_at
            if ended is None or ended >= before:
                continue
            names = [n for e in await self.entries(figures.session.id) for n in self._files(e)]
            deleted += len(prune_results(self.media.results_dir, names, older_than=before))
        return deleted

    async def gallery_page(self, gallery_key: str) -> GalleryPage | None:
        """The gallery of the session with this key (None for an unknown key): every entry
        with a result, newest first, and its kept files."""
        session = await self.store.session_by_gallery_key(gallery_key)
        return None if session is None else await self._page(session)

    async def gallery_page_by_id(self, session_id: str) -> GalleryPage | None:
        """The same page, by the session's short id (`genrelay sessions export`)."""
        session = await self.store.get_session(session_id)
        return None if session is None else await self._page(session)

    async def _page(self, session: Session) -> GalleryPage:
        figures = await self.store.session_figures(session.id)
        assert figures is not None
        made = [e for e in reversed(await self.entries(session.id)) if _made(e)]
        return GalleryPage(
            figures=figures,
            entries=tuple(made),
            files={e.number: self._files(e) for e in made},
        )


def _made(entry: Entry) -> bool:
    return entry.job.state is JobState.SUCCEEDED and bool(entry.job.result_urls)
