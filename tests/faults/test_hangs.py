"""Hanging and rate-limiting upstreams: every call answers within its timeout plus a margin, caps hold."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.faults.conftest import GITHUB_SLOTS, MARGIN_S, UPSTREAM_TIMEOUT_S, WEBHOOK_SLOTS, assert_serving
from tests.support.mcp_client import ScriptedUser, mcp_session, text_of

CALLERS = 8
TIMED_OUT = "did not answer within"
CAPPED = "too many concurrent calls to"
# A post that may have arrived is never retried, so one timeout bounds it.
WEBHOOK_BOUND_S = UPSTREAM_TIMEOUT_S + MARGIN_S


@pytest.fixture(scope="module")
def server(fault_servers):
    return fault_servers["hangs"]


@contextlib.asynccontextmanager
async def sessions(url: str, count: int, user: ScriptedUser | None = None):
    """Open `count` sessions first, so that the calls made on them really run at the same time."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(mcp_session(url, user=user)) for _ in range(count)]


async def all_within(bound_s: float, calls) -> list:
    """Run the calls concurrently; fail if any is still running after `bound_s` (a stuck call)."""
    return await asyncio.wait_for(asyncio.gather(*calls), bound_s)


class TestNoStuckCalls:
    async def test_concurrent_calls_to_a_hanging_github_all_answer_in_time_and_the_cap_holds(self, server, github_standin):
        github_standin.fault = "hang"
        async with sessions(server.url, CALLERS) as opened:
            started = time.monotonic()
            results = await all_within(UPSTREAM_TIMEOUT_S + MARGIN_S, [
                session.call_tool("github_search_issues", {"query": "login"}) for session in opened])
            elapsed = time.monotonic() - started
        texts = [text_of(result) for result in results]
        assert all(result.is_error for result in results)
        assert sum(TIMED_OUT in text for text in texts) <= GITHUB_SLOTS, "more calls ran than the cap allows"
        assert sum(CAPPED in text for text in texts) >= CALLERS - GITHUB_SLOTS
        assert all(TIMED_OUT in text or CAPPED in text for text in texts), texts
        assert elapsed < UPSTREAM_TIMEOUT_S + MARGIN_S
        assert len(github_standin.requests) <= GITHUB_SLOTS
        assert_serving(server, *texts)

    async def test_a_hanging_github_does_not_stall_the_other_tools(self, server, github_standin):
        github_standin.fault = "hang"
        async with sessions(server.url, 2) as (hung, other):
            search = asyncio.create_task(hung.call_tool("github_search_issues", {"query": "login"}))
            await asyncio.sleep(0.1)  # let the search reach the hanging stand-in
            started = time.monotonic()
            query = await other.call_tool("query_database", {"sql": "SELECT 1"})
            status = await other.call_tool("attestation_status", {})
            elapsed = time.monotonic() - started
            assert not search.done(), "the search should still be waiting on GitHub"
            searched = await asyncio.wait_for(search, UPSTREAM_TIMEOUT_S + MARGIN_S)
        assert not query.is_error and not status.is_error
        assert elapsed < UPSTREAM_TIMEOUT_S / 2
        assert TIMED_OUT in text_of(searched)

    async def test_concurrent_confirmed_posts_to_a_hanging_webhook_answer_in_time(self, server, webhook_sink):
        webhook_sink.fault = "hang"
        callers = WEBHOOK_SLOTS + 2
        async with sessions(server.url, callers, user=ScriptedUser("accept")) as opened:
            results = await all_within(WEBHOOK_BOUND_S, [
                session.call_tool("send_notification", {"message": f"hang {index}"})
                for index, session in enumerate(opened)])
        texts = [text_of(result) for result in results]
        assert all(result.is_error for result in results)
        assert sum("may have been delivered" in text for text in texts) <= WEBHOOK_SLOTS
        assert sum(CAPPED in text for text in texts) >= callers - WEBHOOK_SLOTS
        assert webhook_sink.posts == []
        assert_serving(server, *texts)


class TestRateLimitedUpstreams:
    async def test_github_429_names_the_retry_after_time(self, server, github_standin):
        github_standin.fault = "429"
        async with mcp_session(server.url) as session:
            result = await session.call_tool("github_search_issues", {"query": "login"})
        assert result.is_error and "rate limit reached; it resets at 7 s from now" in text_of(result)
        assert len(github_standin.requests) == 1, "a 429 must not be retried at once"

    async def test_webhook_429_is_not_retried_and_posts_nothing(self, server, webhook_sink):
        webhook_sink.fault = "429"
        async with mcp_session(server.url, user=ScriptedUser("accept")) as session:
            result = await session.call_tool("send_notification", {"message": "slow down test"})
        assert result.is_error and "rate limiting (429)" in text_of(result)
        assert webhook_sink.attempts == 1 and webhook_sink.posts == []
        assert_serving(server, text_of(result))
