"""Read-only query execution on a pooled Postgres connection, bounded in time, rows, bytes and memory.

Threat model: the SQL guard (app/guards/sql.py) has already parsed the statement; this layer
assumes it was wrong anyway. Every query runs inside a `READ ONLY` transaction whose statement,
lock and idle timeouts and `standard_conforming_strings` are set transaction-locally first (so a
query cannot change them for the next caller), over the extended protocol (so a stacked statement
cannot run), on a role that has only SELECT. The statement is embedded as a subquery in a bounding
query, so Postgres itself sends at most `max_rows + 1` rows and withholds every row past the byte
cap (it measures each row's text form): a 200 MB value never reaches this process. The whole
exchange (BEGIN, limits, query, COMMIT) is pipelined into one round trip.
Only real unavailability (no connection, server shutting down, out of resources) is reported as an
`UpstreamError`, which the breaker counts; an error the query itself caused is the caller's, so
no reader can open the breaker for everybody. Errors never carry the DSN.
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
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.errors import InvalidArgument, UpstreamError, deny
from app.telemetry.instruments import traced_upstream

UPSTREAM = "postgres"
MAX_RESULT_BYTES = 256 * 1024
LOCK_TIMEOUT_MS = 1000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10_000
POOL_MAX_SIZE = 8
_PRIVILEGE_ERRORS = (pg_errors.InsufficientPrivilege, pg_errors.ReadOnlySqlTransaction)
# SQLSTATE classes of the caller's own mistakes (syntax, undefined names, bad data,
# unsupported feature): safe and useful to show Postgres' primary message.
CALLER_ERROR_CLASSES = frozenset({"42", "22", "21", "0A", "2F", "39", "44"})
# Only these mean the database is unavailable, and only they count toward the breaker:
# connection exceptions (08), the server shutting down or not accepting connections (57P0x),
# insufficient resources (53xxx), system errors (58xxx). Every other SQLSTATE, 54001 "statement
# too complex" or 55000 included, was caused by the query and is the caller's.
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "58"})
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P04"})
# ... except a limit the query ran into itself (temp_file_limit), which is the caller's.
CALLER_SQLSTATES = frozenset({"53400"})
# The guarded statement runs as subquery `q`. Postgres numbers its rows, keeps a running total of
# their text size, stops after `limit` rows and blanks every row once the total passes `cap`; the
# first column is that total, so the client knows a row was withheld.
_BOUNDED_QUERY = """SELECT w.mcp_tee_total, r.* FROM (
  SELECT q AS mcp_tee_row,
         sum(octet_length(q::text) + 1) OVER (ROWS UNBOUNDED PRECEDING) AS mcp_tee_total,
         row_number() OVER (ROWS UNBOUNDED PRECEDING) AS mcp_tee_ord
  FROM (
{statement}
  ) AS q
  LIMIT {limit}
) AS w LEFT JOIN LATERAL (SELECT (w.mcp_tee_row).*) AS r ON w.mcp_tee_total <= {cap}
ORDER BY w.mcp_tee_ord"""


_IN_TRANSACTION = frozenset({TransactionStatus.INTRANS, TransactionStatus.INERROR})


def _transaction_limits(statement_timeout_ms: int) -> dict[str, str]:
    """Transaction-local limits, plus the string semantics the SQL guard's parser assumed."""
    return {
        "statement_timeout": f"{int(statement_timeout_ms)}ms",
        "lock_timeout": f"{LOCK_TIMEOUT_MS}ms",
        "idle_in_transaction_session_timeout": f"{IDLE_IN_TRANSACTION_TIMEOUT_MS}ms",
        # pglast parses with standard-conforming strings; the server must read the text the same way.
        "standard_conforming_strings": "on",
    }


# One statement sets every limit: `set_config(name, value, true)` is `SET LOCAL`.
_SET_LIMITS = "SELECT " + ", ".join(f"set_config('{name}', %s, true)" for name in _transaction_limits(0))


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
        pool_size: Most connections held open; at least the upstream's concurrency cap, so the
            cap (fair per principal) binds before the pool does.

    Example:
        db = ReadOnlyDatabase("postgresql://reader@127.0.0.1/demo")
        result = await db.query("SELECT id FROM issues", max_rows=10)
    """

    def __init__(self, conninfo: str, *, statement_timeout_ms: int = 5000, connect_timeout_s: float = 5.0,
                 pool_size: int = POOL_MAX_SIZE) -> None:
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=connect_timeout_s,
            configure=_configure,
            reconnect_timeout=30.0,
            # Defence in depth: even a statement sent outside our BEGIN READ ONLY would be read-only.
            kwargs={"connect_timeout": max(1, int(connect_timeout_s)), "application_name": "mcp-tee",
                    "options": "-c default_transaction_read_only=on"},
        )
        self._opened = False
        self._statement_timeout_ms = statement_timeout_ms
        self._limits = tuple(_transaction_limits(statement_timeout_ms).values())

    async def open(self) -> None:
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()

    def stats(self) -> dict[str, int]:
        return {key: value for key, value in self._pool.get_stats().items() if key.startswith("pool_")}

    @traced_upstream(UPSTREAM, "query")
    async def query(self, statement: str, *, max_rows: int) -> QueryResult:
        """Run one guarded statement (`GuardedQuery.statement`, no `;`) and return its capped result."""
        await self.open()
        try:
            return await self._run(statement, max_rows)
        except _PRIVILEGE_ERRORS:
            deny("the database refused this query: the server's role is read-only", layer="db_role")
        except pg_errors.QueryCanceled:
            raise InvalidArgument(
                f"query exceeded the {self._statement_timeout_ms} ms statement timeout; narrow it down"
            ) from None
        except pg_errors.LockNotAvailable:
            raise InvalidArgument("query waited too long for a lock; try again later") from None
        except PoolTimeout:
            raise UpstreamError(UPSTREAM, "database unavailable: no connection could be made in time") from None
        except psycopg.Error as exc:
            raise classify(exc) from None


    async def _run(self, statement: str, max_rows: int) -> QueryResult:
        try:
            async with self._pool.connection() as conn:
                return await run_bounded(conn, statement, max_rows, self._limits)
        except psycopg.OperationalError as exc:
            if not _connection_lost(exc):
                raise
        # An idle pooled connection died (a restarted server): drop the dead ones and retry once on a
        # fresh connection. This replaces a liveness check per checkout, which cost a round trip per
        # query; a retry is safe because the transaction was read-only.
        await self._pool.check()
        async with self._pool.connection() as conn:
            return await run_bounded(conn, statement, max_rows, self._limits)


def _connection_lost(exc: psycopg.Error) -> bool:
    return exc.sqlstate is None or exc.sqlstate[:2] == "08" or exc.sqlstate in UNAVAILABLE_SQLSTATES


def classify(exc: psycopg.Error) -> InvalidArgument | UpstreamError:
    """The caller's error (shown, not counted) or the database's unavailability (counted by the breaker)."""
    sqlstate = exc.sqlstate or ""
    if not sqlstate or (sqlstate not in CALLER_SQLSTATES and (
            sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in UNAVAILABLE_SQLSTATES)):
        # No SQLSTATE means the connection itself failed (psycopg raised before Postgres answered).
        return UpstreamError(UPSTREAM, f"database unavailable ({type(exc).__name__}); try again")
    if sqlstate[:2] in CALLER_ERROR_CLASSES:
        return InvalidArgument(f"database error: {_primary_message(exc)}")
    return InvalidArgument(f"the database refused this query (SQLSTATE {sqlstate})")


async def _configure(conn: psycopg.AsyncConnection) -> None:
    # We send BEGIN READ ONLY and COMMIT ourselves, in the same pipeline as the query.
    await conn.set_autocommit(True)


async def run_bounded(conn: psycopg.AsyncConnection, statement: str, max_rows: int,
                      limits: tuple[str, ...]) -> QueryResult:
    """BEGIN READ ONLY, the local limits, the bounding query and COMMIT, pipelined: one round trip."""
    bounded = _BOUNDED_QUERY.format(statement=statement.replace("%", "%%"), limit=int(max_rows) + 1,
                                    cap=MAX_RESULT_BYTES)
    try:
        async with conn.pipeline():
            await conn.execute("BEGIN READ ONLY", prepare=True)
            await conn.execute(_SET_LIMITS, limits, prepare=True)
            # Parameters (none) force the extended protocol: Postgres refuses a second statement.
            # Never prepared: psycopg would cache its plan on this pooled connection after the fifth
            # run, making that text faster for every caller, a timing oracle for another caller's
            # statements (see app/guards/admitted.py). This module's constant statements, which carry
            # no caller text, are prepared at once.
            cursor = await conn.execute(bounded, (), prepare=False)
            await conn.execute("COMMIT", prepare=True)
    except psycopg.Error:
        # A failed statement made Postgres skip the rest of the pipeline, COMMIT included.
        if not conn.closed and conn.info.transaction_status in _IN_TRANSACTION:
            await conn.execute("ROLLBACK")
        raise
    columns = [column.name for column in (cursor.description or [])[1:]]
    return cap_result(columns, await cursor.fetchall(), max_rows)


def cap_result(columns: list[str], records: list[tuple], max_rows: int) -> QueryResult:
    """Apply the row cap and the exact byte cap (on the JSON the caller will get) to bounded rows."""
    rows: list[list[Any]] = []
    size = 2
    too_big = QueryResult(columns, rows, True, f"result exceeded {MAX_RESULT_BYTES} bytes")
    for total, *record in records:
        if len(rows) == max_rows:
            return QueryResult(columns, rows, True, f"more than {max_rows} rows")
        if total > MAX_RESULT_BYTES:  # Postgres withheld this row and every later one
            return too_big
        row = [to_json_safe(value) for value in record]
        size += len(json.dumps(row, default=str)) + 1
        if size > MAX_RESULT_BYTES:  # the JSON can be larger than the text Postgres measured
            return too_big
        rows.append(row)
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
