"""`query_database` end to end: guard, read-only role, row and byte caps, JSON types, pool recovery."""

from __future__ import annotations

import psycopg
import pytest

from tests.guards.corpus import ATTACKS, MUST_ALLOW
from tests.support.mcp_client import mcp_session, text_of

# NUL bytes cannot travel to Postgres at all; the guard unit tests cover them.
ATTACKS_OVER_THE_WIRE = [(name, sql) for name, sql in ATTACKS if "\x00" not in sql]
CHECKSUM_SQL = """
SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM (
  SELECT format('%s.%s', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
  UNION ALL SELECT (SELECT md5(string_agg(i::text, ',' ORDER BY i.id)) FROM issues i)
  UNION ALL SELECT (SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) FROM incidents x)
  UNION ALL SELECT string_agg(rolname || rolsuper::text, ',' ORDER BY rolname) FROM pg_roles
  UNION ALL SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database
) AS s(t)
"""


def database_checksum(admin_dsn: str) -> str:
    with psycopg.connect(admin_dsn) as conn:
        return conn.execute(CHECKSUM_SQL).fetchone()[0]


async def call_query(url: str, sql: str, max_rows: int = 100):
    async with mcp_session(url) as session:
        return await session.call_tool("query_database", {"sql": sql, "max_rows": max_rows})


class TestReadOnlyQueries:
    async def test_json_safe_types_come_back(self, server):
        result = await call_query(
            server.url,
            "SELECT id, cost, ref, opened_at, payload, ARRAY[1,2] AS arr, '\\x0102'::bytea AS raw, interval '1 hour' AS d "
            "FROM incidents ORDER BY id LIMIT 2",
        )
        assert not result.is_error, text_of(result)
        body = result.structured_content
        row = dict(zip(body["columns"], body["rows"][0]))
        assert row["cost"] == "123.45" and len(row["ref"]) == 36 and row["opened_at"].startswith("2026-02-02")
        assert row["payload"]["teams"] == ["sre", "db"] and row["arr"] == [1, 2]
        assert row["raw"] == {"base64": "AQI="} and row["d"] == "3600.0s"
        assert body["content_trust"] == "untrusted-third-party" and len(body["statement_fingerprint"]) == 16

    async def test_rows_are_capped_and_truncation_reported(self, server):
        result = await call_query(server.url, "SELECT id FROM issues ORDER BY id", max_rows=5)
        body = result.structured_content
        assert body["row_count"] == 5 and body["truncated"] is True and "more than 5 rows" in body["truncated_reason"]

    async def test_bytes_are_capped(self, server):
        result = await call_query(server.url, "SELECT repeat('x', 10000) FROM generate_series(1, 100)", max_rows=100)
        body = result.structured_content
        assert body["truncated"] is True and "bytes" in body["truncated_reason"] and body["row_count"] < 100

    async def test_exact_row_count_is_not_truncated(self, server):
        body = (await call_query(server.url, "SELECT 1 UNION ALL SELECT 2", max_rows=2)).structured_content
        assert body["row_count"] == 2 and body["truncated"] is False

    @pytest.mark.parametrize("name, sql", MUST_ALLOW, ids=[name for name, _ in MUST_ALLOW])
    async def test_legitimate_queries_run(self, server, name, sql):
        result = await call_query(server.url, sql, max_rows=20)
        assert not result.is_error, f"{name}: {text_of(result)}"


class TestWritesNeverHappen:
    async def test_attack_corpus_is_refused_and_database_unchanged(self, server, postgres):
        before = database_checksum(postgres.admin_dsn)
        async with mcp_session(server.url) as session:
            for name, sql in ATTACKS_OVER_THE_WIRE:
                result = await session.call_tool("query_database", {"sql": sql})
                assert result.is_error, f"attack {name} was not refused"
                assert "Traceback" not in text_of(result)
        assert database_checksum(postgres.admin_dsn) == before
        assert server.alive()

    def test_the_role_itself_cannot_write(self, postgres):
        """Defense in depth: even without the guard, the reader role refuses writes."""
        with psycopg.connect(postgres.reader_dsn) as conn:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM issues")
        with psycopg.connect(postgres.reader_dsn, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM issues")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE public.pwned (x int)")


class TestDatabaseFailures:
    async def test_statement_timeout_is_a_clear_error(self, server):
        result = await call_query(server.url, "SELECT count(*) FROM generate_series(1, 500000000)")
        assert result.is_error and "statement timeout" in text_of(result)

    async def test_caller_mistakes_are_named(self, server):
        result = await call_query(server.url, "SELECT nope FROM issues")
        assert result.is_error and 'column "nope" does not exist' in text_of(result)

    async def test_pool_recovers_after_postgres_restart(self, server, postgres):
        assert not (await call_query(server.url, "SELECT 1")).is_error
        postgres.restart()
        result = await call_query(server.url, "SELECT count(*) FROM issues")
        assert not result.is_error, text_of(result)
        assert result.structured_content["rows"] == [[300]]
