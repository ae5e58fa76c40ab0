"""Upstreams that refuse connections (GitHub, the webhook) or are down (Postgres): fast, clear errors, then recovery."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import (FAILURES_TO_OPEN, MARGIN_S, UPSTREAM_TIMEOUT_S, assert_serving, breaker_state,
                                   wait_for_breaker)
from tests.support.mcp_client import ScriptedUser, mcp_session, text_of

# After Postgres comes back, the pool reconnects with backoff; recovery must still be prompt.
POOL_RECOVERY_S = 10.0
COUNT_SQL = {"sql": "SELECT count(*) FROM issues"}


@pytest.fixture(scope="module")
def server(fault_servers):
    return fault_servers["unreachable"]


async def timed_call(session, tool: str, arguments: dict):
    started = time.monotonic()
    result = await session.call_tool(tool, arguments)
    return result, time.monotonic() - started


class TestConnectionRefused:
    async def test_github_refusing_connections_is_a_fast_clear_error(self, server):
        async with mcp_session(server.url) as session:
            result, elapsed = await timed_call(session, "github_search_issues", {"query": "login"})
        assert result.is_error and "GitHub is unreachable (ConnectError)" in text_of(result)
        assert elapsed < UPSTREAM_TIMEOUT_S, "a refused connection must not wait for the timeout"
        assert_serving(server, text_of(result))

    async def test_webhook_refusing_connections_is_a_clear_error_naming_no_url(self, server):
        async with mcp_session(server.url, user=ScriptedUser("accept")) as session:
            result, elapsed = await timed_call(session, "send_notification", {"message": "deploy done"})
        text = text_of(result)
        assert result.is_error and "the webhook is unreachable (ConnectError)" in text
        assert "was not sent" in text and "127.0.0.1" not in text
        assert elapsed < UPSTREAM_TIMEOUT_S
        assert_serving(server, text)


class TestPostgresDown:
    async def test_stopped_postgres_errors_in_time_opens_the_breaker_and_the_pool_recovers(self, server, postgres):
        async with mcp_session(server.url) as session:
            assert not (await session.call_tool("query_database", COUNT_SQL)).is_error
        postgres.stop()
        try:
            async with mcp_session(server.url) as session:
                for _ in range(FAILURES_TO_OPEN):
                    result, elapsed = await timed_call(session, "query_database", COUNT_SQL)
                    assert result.is_error and elapsed < UPSTREAM_TIMEOUT_S + MARGIN_S, (text_of(result), elapsed)
                assert breaker_state(server, "postgres") == "open"
                fast, elapsed = await timed_call(session, "query_database", COUNT_SQL)
                assert "postgres is temporarily unavailable" in text_of(fast) and elapsed < UPSTREAM_TIMEOUT_S / 4
                status, _ = await timed_call(session, "attestation_status", {})
                assert not status.is_error, "a dead database took down a tool that does not use it"
        finally:
            postgres.start()
        assert await self._recovers_within(server, POOL_RECOVERY_S)
        assert breaker_state(server, "postgres") == "closed"
        assert_serving(server)

    @staticmethod
    async def _recovers_within(server, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        async with mcp_session(server.url) as session:
            while time.monotonic() < deadline:
                if breaker_state(server, "postgres") == "open":
                    wait_for_breaker(server, "postgres", "half_open", within_s=seconds)
                result = await session.call_tool("query_database", COUNT_SQL)
                if not result.is_error:
                    return result.structured_content["rows"] == [[300]]
        return False
