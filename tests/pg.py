"""The test PostgreSQL server: each test gets a schema of its own on it (created empty,
dropped after), reached through a DATABASE_URL whose search_path is that schema. The server
is 127.0.0.1:5432, database `test`, user `postgres` (CI starts it), or GENRELAY_TEST_PG."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from bot.logs import redact_url

__all__ = ["PG_DEFAULT", "pg_schema", "pg_server_url", "with_search_path"]

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def pg_server_url() -> str:
    return os.environ.get("GENRELAY_TEST_PG") or PG_DEFAULT


def with_search_path(url: str, schema: str) -> str:
    """`url` with libpq's `options` setting the search_path to `schema` (URL-encoded)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def _admin(server: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(server, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {redact_url(server)} is unreachable ({str(exc).strip()}): the store"
            " tests run on it and are never skipped. Start it, or set GENRELAY_TEST_PG to a"
            " postgresql:// URL of a server where this user may create schemas.",
            pytrace=False,
        )


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema for one test: its DATABASE_URL, the schema dropped afterwards."""
    server = pg_server_url()
    schema = f"genrelay_test_{secrets.token_hex(6)}"
    with _admin(server) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(server, schema)
    finally:
        with _admin(server) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
