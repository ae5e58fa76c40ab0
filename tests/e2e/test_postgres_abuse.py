"""Issue 13, findings 1, 2 and 7: a reader attacks the shared Postgres path of the real server, and fails.

One server with bearer auth (so attacker and victim are different principals), a Postgres breaker
that opens after two failures, four Postgres slots and the default fair share (half of them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psycopg
import pytest
import tomli_w
import tomllib

from app.auth.dev_issuer import DevIssuer
from tests.support.mcp_client import mcp_session, text_of
from tests.support.server_process import ServerProcess

BREAKER_FAILURES = 2
POSTGRES_SLOTS = 4
QUEUE_S = 0.5
# Each raises an error that the query itself causes: 54001 (statement too complex), 55000
# (object not in prerequisite state), 22P02 (bad input).
QUERY_CAUSED_ERRORS = ["SELECT repeat('[', 100000)::jsonb", "SELECT pg_get_wal_replay_pause_state()",
                       "SELECT 'x'::int"]
# Runs until the 5 s statement timeout.
SLOW_SQL = "SELECT count(*) FROM generate_series(1, 5000000000)"
HUGE_ROW_SQL = "SELECT repeat('x', 200000000)"
HUGE_ROW_CALLS = 4
# Four 200 MB rows would add 800 MB or more; the bound leaves generous room for the server's own work.
RSS_BOUND_KIB = 64 * 1024


@pytest.fixture(scope="module")
def shared_server(baseline_env, roomy_policy, tmp_path_factory):
    state = tmp_path_factory.mktemp("postgres-abuse")
    document = tomllib.loads(roomy_policy.read_text())
    document["upstreams"]["postgres"].update(breaker_failures=BREAKER_FAILURES, max_concurrency=POSTGRES_SLOTS,
                                             queue_s=QUEUE_S)
    (state / "capabilities.toml").write_text(tomli_w.dumps(document))
    env = {**baseline_env, "MCP_CAPABILITY_POLICY": str(state / "capabilities.toml"), "MCP_AUTH_ISSUER": "dev",
           "MCP_DEV_ISSUER_DIR": str(state / "issuer"), "MCP_AUDIT_LOG": str(state / "audit.jsonl")}
    process = ServerProcess(env, log_dir=state)
    process.set_env(MCP_AUTH_AUDIENCE=process.url)
    process.start()
    process.issuer = DevIssuer(state / "issuer")
    yield process
    process.stop()


def bearer(server, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.issuer.mint(scopes=['mcp:read'], audience=server.url, subject=subject)}"}


def postgres_breaker(server) -> dict:
    return httpx.get(f"{server.base_url}/healthz", timeout=5).json()["breakers"]["postgres"]


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


async def query(server, subject: str, sql: str):
    async with mcp_session(server.url, headers=bearer(server, subject)) as session:
        return await session.call_tool("query_database", {"sql": sql, "max_rows": 10})


class TestBreakerCannotBeOpenedByAReader:
    """Finding 1: errors a query causes are the caller's; they never open the shared breaker."""

    async def test_query_caused_errors_leave_the_breaker_closed_for_everybody(self, shared_server):
        async with mcp_session(shared_server.url, headers=bearer(shared_server, "mallory")) as session:
            for sql in QUERY_CAUSED_ERRORS:
                for _ in range(BREAKER_FAILURES + 3):
                    result = await session.call_tool("query_database", {"sql": sql})
                    assert result.is_error, sql
                    assert "temporarily unavailable" not in text_of(result), text_of(result)
        assert postgres_breaker(shared_server) == {"state": "closed", "failures": 0}
        victim = await query(shared_server, "alice", "SELECT count(*) FROM issues")
        assert not victim.is_error and victim.structured_content["rows"] == [[300]], text_of(victim)

    async def test_the_errors_still_tell_the_caller_what_happened(self, shared_server):
        result = await query(shared_server, "mallory", QUERY_CAUSED_ERRORS[0])
        assert "SQLSTATE 54001" in text_of(result) and "Traceback" not in text_of(result)


class TestMemoryIsBoundedAtTheSource:
    """Finding 2: Postgres withholds oversized rows, so they never reach the server's memory."""

    async def test_four_concurrent_200_mb_rows_stay_within_the_rss_bound(self, shared_server):
        await query(shared_server, "warm-up", "SELECT 1")
        before = peak_rss_kib(shared_server.pid)
        # Four principals, so that the fair share lets all four run at once.
        results = await asyncio.gather(*(query(shared_server, f"hoarder-{n}", HUGE_ROW_SQL)
                                         for n in range(HUGE_ROW_CALLS)))
        grown = peak_rss_kib(shared_server.pid) - before
        assert grown <= RSS_BOUND_KIB, f"peak RSS grew by {grown // 1024} MiB"
        for result in results:
            body = result.structured_content or {}
            # Either Postgres finished measuring the row (withheld, reported) or the statement timeout hit first.
            assert ("result exceeded" in str(body.get("truncated_reason")) and body["rows"] == []) or (
                result.is_error and "statement timeout" in text_of(result)), text_of(result)

    async def test_rows_before_the_cap_are_kept_and_the_cut_is_reported(self, shared_server):
        result = await query(shared_server, "alice", "SELECT n, repeat('x', 100000) FROM generate_series(1, 5) AS n")
        body = result.structured_content
        assert body["truncated"] is True and "result exceeded" in body["truncated_reason"]
        assert [row[0] for row in body["rows"]] == [1, 2]


class TestFairShareOfSlots:
    """Finding 7: one reader's slow queries hold at most half the Postgres slots."""

    async def test_a_victim_is_served_while_a_reader_holds_its_whole_share(self, shared_server):
        slow = [asyncio.create_task(query(shared_server, "mallory", SLOW_SQL)) for _ in range(POSTGRES_SLOTS)]
        # The calls over mallory's share come back first, refused after the queue time.
        refused = []
        for finished in asyncio.as_completed(slow):
            refused.append(await finished)
            if len(refused) == POSTGRES_SLOTS // 2:
                break
        assert all("from this principal (at most 2 at once)" in text_of(result) for result in refused)
        victims = await asyncio.gather(*(query(shared_server, f"victim-{n}", "SELECT 1") for n in range(2)))
        assert all(not result.is_error for result in victims), [text_of(result) for result in victims]
        held = await asyncio.gather(*slow)
        assert sum("statement timeout" in text_of(result) for result in held) == POSTGRES_SLOTS // 2


class TestOtherCallersStatementsStayPrivate:
    """Every caller reaches Postgres as the server's one role, which shows each session's running statement."""

    async def test_a_running_statement_is_visible_to_the_role_but_not_through_the_tool(self, shared_server, postgres):
        canary = "alice-private-canary-5c1e"
        running = asyncio.create_task(query(shared_server, "alice", "SELECT count(*) FROM generate_series(1, 30000000) "
                                                                     f"AS g WHERE '{canary}' <> ''"))
        # autocommit: the activity view is a snapshot that holds still for a whole transaction.
        async with await psycopg.AsyncConnection.connect(postgres.reader_dsn, autocommit=True) as reader:
            for _ in range(100):  # the threat: the server's role sees alice's statement, literal and all
                rows = await (await reader.execute("SELECT query FROM pg_stat_activity")).fetchall()
                if any(canary in (text or "") for (text,) in rows):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail(f"alice's statement never showed in pg_stat_activity: {text_of(await running)[:300]}")
        peeks = await asyncio.gather(*(query(shared_server, "bob", sql) for sql in (
            "SELECT query FROM pg_stat_activity", "SELECT query FROM pg_stat_get_activity(NULL)")))
        assert [text_of(peek) for peek in peeks] == [
            "reading pg_stat_activity is not allowed: it shows other callers' activity",
            "functions named pg_stat_get_* are not allowed"]
        await running
