"""Read-only query execution on a pooled Postgres connection, bounded in time, rows and bytes.

Threat model: the SQL guard (app/guards/sql.py) has already parsed the
statement; this layer assumes it was wrong anyway. Every query runs inside a
`READ ONLY` transaction with `SET LOCAL` statement, lock and idle timeouts,
through a server-side cursor (the extended protocol, so a stacked statement
cannot run), on a role that has only SELECT. Rows are fetched in batches up
to `max_rows + 1`, never all then sliced, and the result is cut at a byte cap.
Errors name what went wrong in Postgres' words for the caller's own mistakes,
and only the failure class for connection problems, so the DSN never leaks.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.errors import InvalidArgument, UpstreamError, deny

UPSTREAM = "postgres"
MAX_RESULT_BYTES = 256 * 1024
FETCH_BATCH = 200
LOCK_TIMEOUT_MS = 1000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000
POOL_MAX_SIZE = 8
_PRIVILEGE_ERRORS = (pg_errors.InsufficientPrivilege, pg_errors.ReadOnlySqlTransaction)
# SQLSTATE classes of the caller's own mistakes (syntax, undefined names, bad data,
# unsupported feature): safe and useful to show Postgres' primary message.
CALLER_ERROR_CLASSES = frozenset({"42", "22", "21", "0A", "2F", "39", "44"})


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    truncated_reason: str | None


class ReadOnlyDatabase:
    """A lazily opened connection pool that only ever runs read-only transactions.

    Args:
        conninfo: libpq connection string or URL. Held here, never logged or shown.
        statement_timeout_ms: Per-statement cap, applied with `SET LOCAL`.
        connect_timeout_s: How long a call waits for a pooled connection.

    Example:
        db = ReadOnlyDatabase("postgresql://reader@127.0.0.1/demo")
        result = await db.query("SELECT id FROM issues", max_rows=10)
    """

    def __init__(self, conninfo: str, *, statement_timeout_ms: int = 5000, connect_timeout_s: float = 5.0) -> None:
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=POOL_MAX_SIZE,
            open=False,
            timeout=connect_timeout_s,
            check=AsyncConnectionPool.check_connection,  # a restarted server's dead sockets get replaced
            configure=_configure,
            reconnect_timeout=30.0,
            kwargs={"connect_timeout": max(1, int(connect_timeout_s)), "application_name": "mcp-tee"},
        )
        self._opened = False
        self._statement_timeout_ms = statement_timeout_ms

    async def open(self) -> None:
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()

    def stats(self) -> dict[str, int]:
        return {key: value for key, value in self._pool.get_stats().items() if key.startswith("pool_")}

    async def query(self, sql: str, *, max_rows: int) -> QueryResult:
        await self.open()
        try:
            async with self._pool.connection() as conn:
                async with conn.transaction():
                    await set_local_limits(conn, self._statement_timeout_ms)
                    return await fetch_capped(conn, sql, max_rows)
        except _PRIVILEGE_ERRORS:
            deny("the database refused this query: the server's role is read-only", layer="db_role")
        except pg_errors.QueryCanceled:
            raise InvalidArgument(
                f"query exceeded the {self._statement_timeout_ms} ms statement timeout; narrow it down"
            ) from None
        except pg_errors.LockNotAvailable:
            raise UpstreamError(UPSTREAM, "query waited too long for a lock; try again later") from None
        except PoolTimeout:
            raise UpstreamError(UPSTREAM, "database unavailable: no connection could be made in time") from None
        except psycopg.Error as exc:
            if (exc.sqlstate or "")[:2] in CALLER_ERROR_CLASSES:
                raise InvalidArgument(f"database error: {_primary_message(exc)}") from None
            raise UpstreamError(UPSTREAM, f"database unavailable ({type(exc).__name__}); try again") from None


async def _configure(conn: psycopg.AsyncConnection) -> None:
    # Every transaction psycopg opens on this connection is BEGIN READ ONLY.
    await conn.set_read_only(True)


async def set_local_limits(conn: psycopg.AsyncConnection, statement_timeout_ms: int) -> None:
    """Transaction-local limits, plus the string semantics the SQL guard's parser assumed."""
    settings = {
        "statement_timeout": f"{int(statement_timeout_ms)}ms",
        "lock_timeout": f"{LOCK_TIMEOUT_MS}ms",
        "idle_in_transaction_session_timeout": f"{IDLE_IN_TRANSACTION_TIMEOUT_MS}ms",
        # pglast parses with standard-conforming strings; the server must read the text the same way.
        "standard_conforming_strings": "on",
    }
    for setting, value in settings.items():
        await conn.execute("SELECT set_config(%s, %s, true)", (setting, value))


async def fetch_capped(conn: psycopg.AsyncConnection, sql: str, max_rows: int) -> QueryResult:
    # A named cursor is DECLAREd server-side over the extended protocol: one statement, streamed.
    async with conn.cursor(name="mcp_tee_query") as cursor:
        await cursor.execute(sql.replace("%", "%%"), ())
        columns = [column.name for column in cursor.description or []]
        rows: list[list[Any]] = []
        size = 2
        while len(rows) <= max_rows:
            batch = await cursor.fetchmany(min(FETCH_BATCH, max_rows + 1 - len(rows)))
            if not batch:
                break
            for record in batch:
                row = [to_json_safe(value) for value in record]
                size += len(json.dumps(row, default=str)) + 1
                if size > MAX_RESULT_BYTES:
                    return QueryResult(columns, rows, True, f"result exceeded {MAX_RESULT_BYTES} bytes")
                rows.append(row)
        if len(rows) > max_rows:
            return QueryResult(columns, rows[:max_rows], True, f"more than {max_rows} rows")
        return QueryResult(columns, rows, False, None)


def to_json_safe(value: Any) -> Any:
    """Convert a value psycopg returned into something `json.dumps` accepts without loss of meaning."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact: a float would round money
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds()}s"
    if isinstance(value, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    return str(value)


def _primary_message(exc: psycopg.Error) -> str:
    message = (exc.diag.message_primary if exc.diag else None) or type(exc).__name__
    return message[:300]
