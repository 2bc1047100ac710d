"""The inbox: platform updates kept from the moment they are fetched until their handling
finished, so one a process took but never finished is replayed by the next. Mixed into
both job stores (see dialect.py)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from storage.dialect import Db

__all__ = ["InboxQueries"]


class InboxQueries:
    if TYPE_CHECKING:

        @property
        def db(self) -> Db: ...

        def transaction(self) -> AbstractAsyncContextManager[Db]: ...

    async def inbox_add(
        self, source: str, items: Sequence[tuple[int, str]], now: float
    ) -> list[int]:
        """Keep each (item id, payload) not kept yet, in one transaction; returns the ids that
        are new (a twice-delivered or replayed one is not)."""
        new: list[int] = []
        if not items:
            return new
        async with self.transaction() as db:
            for item_id, payload in items:
                cur = await db.execute(
                    "INSERT INTO inbox (source, item_id, payload, received_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (source, item_id, payload, now),
                )
                if cur.rowcount == 1:
                    new.append(item_id)
        return new

    async def inbox_done(self, source: str, item_ids: Sequence[int], now: float) -> None:
        if not item_ids:
            return
        async with self.transaction() as db:
            await db.executemany(
                "UPDATE inbox SET done_at = ? WHERE source = ? AND item_id = ? AND done_at IS NULL",
                [(now, source, item_id) for item_id in item_ids],
            )

    async def inbox_pending(self, source: str) -> list[tuple[int, str]]:
        """(item id, payload) of every item not done, oldest first."""
        async with self.db.execute(
            "SELECT item_id, payload FROM inbox WHERE source = ? AND done_at IS NULL"
            " ORDER BY item_id",
            (source,),
        ) as cur:
            return [(int(r[0]), str(r[1])) for r in await cur.fetchall()]

    async def inbox_prune(self, before: float) -> int:
        """Forget items done before `before`; returns how many."""
        async with self.transaction() as db:
            cur = await db.execute(
                "DELETE FROM inbox WHERE done_at IS NOT NULL AND done_at < ?", (before,)
            )
            return cur.rowcount
