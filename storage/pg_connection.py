"""The PostgreSQL connection a store's queries share: a psycopg 3 pool offering what
SqliteConnection offers (dialect.py's `Db`), so the queries are written once. `db` runs each
statement on a pooled connection of its own, in autocommit; `transaction()` holds one pooled
connection for one transaction. The queries keep SQLite's `?` placeholders: each SQL text is
translated once to psycopg's `%s`. A statement's rows are fetched whole before its
connection goes back to the pool; rows are read by column name or by position."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import RowMaker
from psycopg_pool import AsyncConnectionPool

from bot.constants import PG_POOL_MAX, PG_POOL_MIN

__all__ = ["PgConnection", "PgRow", "pg_row", "to_psycopg"]


@functools.lru_cache(maxsize=4096)
def to_psycopg(sql: str) -> str:
    """`sql` with each `?` outside quotes as `%s`, and every literal `%` as `%%`."""
    out: list[str] = []
    quote: str | None = None  # the quote we are inside: ' (a string) or " (a name)
    for ch in sql:
        if ch == "%":
            out.append("%%")
            continue
        if quote is not None:
            quote = None if ch == quote else quote  # '' inside a string: out and in again
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append(ch)
    return "".join(out)


class PgRow:
    """One row: `row["id"]` or `row[0]`, and unpacked like a tuple."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: Sequence[Any], names: dict[str, int]) -> None:
        self._values = values
        self._names = names

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._names[key] if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._names, self._values, strict=False))!r})"


def pg_row(cursor: AsyncCursor[Any]) -> RowMaker[PgRow]:
    """psycopg's row factory for PgRow. A name given twice (`j.*` beside `e.*`) reads the
    first column of that name, as sqlite3.Row does."""
    names: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        names.setdefault(column.name, i)

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(values, names)

    return make


class PgResult:
    """A statement's outcome, fetched whole: its rows (if it returns any) and rowcount."""

    def __init__(self, rows: list[PgRow], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    async def fetchone(self) -> PgRow | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchall(self) -> list[PgRow]:
        rows, self._next = self._rows[self._next :], len(self._rows)
        return rows

    async def close(self) -> None:
        self._rows = []


class PgExecution:
    """A statement being run, as aiosqlite's: awaited it is its result; `async with` too."""

    __slots__ = ("_coro",)

    def __init__(self, coro: Coroutine[Any, Any, PgResult]) -> None:
        self._coro = coro

    def __await__(self) -> Generator[Any, None, PgResult]:
        return self._coro.__await__()

    async def __aenter__(self) -> PgResult:
        return await self._coro

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        return None


async def _run(conn: AsyncConnection[Any], sql: str, params: Iterable[Any]) -> PgResult:
    async with conn.cursor(row_factory=pg_row) as cur:
        await cur.execute(to_psycopg(sql), tuple(params))
        rows = await cur.fetchall() if cur.description is not None else []
        return PgResult(rows, cur.rowcount)


async def _run_many(
    conn: AsyncConnection[Any], sql: str, params: Iterable[Iterable[Any]]
) -> PgResult:
    async with conn.cursor(row_factory=pg_row) as cur:
        await cur.executemany(to_psycopg(sql), [tuple(p) for p in params])
        return PgResult([], cur.rowcount)


class StatementCount:
    """SQL statements sent to the server (each a round trip; BEGIN and COMMIT too)."""

    __slots__ = ("statements",)

    def __init__(self) -> None:
        self.statements = 0


class PgTransactionDb:
    """Statements on the one connection of a transaction."""

    def __init__(self, conn: AsyncConnection[Any], count: StatementCount) -> None:
        self.conn = conn
        self._count = count

    def execute(self, sql: str, parameters: Iterable[Any] = (), /) -> PgExecution:
        self._count.statements += 1
        return PgExecution(_run(self.conn, sql, parameters))

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]], /) -> PgExecution:
        self._count.statements += 1
        return PgExecution(_run_many(self.conn, sql, parameters))


class PgPoolDb:
    """Statements outside a transaction: each on a pooled connection, in autocommit."""

    def __init__(self, pool: AsyncConnectionPool, count: StatementCount) -> None:
        self.pool = pool
        self._count = count

    async def _one(self, sql: str, parameters: Iterable[Any]) -> PgResult:
        async with self.pool.connection() as conn:
            return await _run(conn, sql, parameters)

    async def _many(self, sql: str, parameters: Iterable[Iterable[Any]]) -> PgResult:
        async with self.pool.connection() as conn:
            return await _run_many(conn, sql, parameters)

    def execute(self, sql: str, parameters: Iterable[Any] = (), /) -> PgExecution:
        self._count.statements += 1
        return PgExecution(self._one(sql, parameters))

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]], /) -> PgExecution:
        self._count.statements += 1
        return PgExecution(self._many(sql, parameters))


class PgConnection:
    """`db` and `transaction()` over a pool of connections to `url`, opened by the store
    (`_open_pool`) and closed by it (`_close_pool`). `writes`: transactions committed;
    `statements`: SQL statements sent, BEGIN and COMMIT included (for benchmarks)."""

    def __init__(self, url: str, *, min_size: int = PG_POOL_MIN, max_size: int = PG_POOL_MAX):
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self._pool: AsyncConnectionPool | None = None
        self.writes = 0
        self._count = StatementCount()

    @property
    def statements(self) -> int:
        return self._count.statements

    async def count_statements(self) -> None:
        """Statements are always counted here (a counter on each one sent)."""

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("the job store is not open")
        return self._pool

    @property
    def db(self) -> PgPoolDb:
        return PgPoolDb(self.pool, self._count)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransactionDb]:
        """One transaction on one pooled connection: committed when the block ends, rolled
        back when it raises. PostgreSQL runs many at once (READ COMMITTED): a query that
        reads before it writes takes its lock first (the stores' `_lock`)."""
        self._count.statements += 2  # BEGIN, and COMMIT or ROLLBACK
        async with self.pool.connection() as conn, conn.transaction():
            yield PgTransactionDb(conn, self._count)
        self.writes += 1

    async def _open_pool(self, timeout_s: float) -> None:
        """Open the pool and wait until its first connections are made (psycopg's
        PoolTimeout after `timeout_s` when the server does not let us in)."""
        pool = AsyncConnectionPool(
            self.url,
            min_size=self.min_size,
            max_size=self.max_size,
            kwargs={"autocommit": True},
            open=False,
            name="genrelay",
        )
        try:
            await pool.open(wait=True, timeout=timeout_s)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
