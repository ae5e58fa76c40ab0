"""Circuit breakers in the real server: open after N failures, fail fast, report, half-open, close."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import (FAILURES_TO_OPEN, MARGIN_S, UPSTREAM_TIMEOUT_S, assert_serving, breaker_state,
                                   health, wait_for_breaker)
from tests.support.mcp_client import mcp_session, text_of

SEARCH = {"query": "login"}
# An open breaker answers from memory; a call that reached the upstream would take the whole timeout.
FAST_FAIL_S = UPSTREAM_TIMEOUT_S / 4


@pytest.fixture(scope="module")
def server(fault_servers):
    return fault_servers["breakers"]


async def timed_search(session):
    started = time.monotonic()
    result = await session.call_tool("github_search_issues", SEARCH)
    return result, time.monotonic() - started


async def trip(server, github_standin, fault: str) -> list[str]:
    """Fail FAILURES_TO_OPEN calls with `fault`; return their error texts."""
    wait_for_breaker(server, "github", "closed")
    github_standin.fault = fault
    texts = []
    async with mcp_session(server.url) as session:
        for _ in range(FAILURES_TO_OPEN):
            result, elapsed = await timed_search(session)
            assert result.is_error and elapsed < UPSTREAM_TIMEOUT_S + MARGIN_S, (text_of(result), elapsed)
            texts.append(text_of(result))
    return texts


async def recover(server, github_standin) -> None:
    github_standin.fault = None
    wait_for_breaker(server, "github", "half_open")
    async with mcp_session(server.url) as session:
        result, _ = await timed_search(session)
    assert not result.is_error, text_of(result)


class TestBreakerOpens:
    async def test_timeouts_open_it_and_then_calls_fail_fast_without_reaching_github(self, server, github_standin):
        texts = await trip(server, github_standin, "hang")
        assert all("did not answer within" in text for text in texts)
        assert breaker_state(server, "github") == "open"
        reached = len(github_standin.requests)
        async with mcp_session(server.url) as session:
            result, elapsed = await timed_search(session)
        assert result.is_error and "temporarily unavailable" in text_of(result) and "retry after" in text_of(result)
        assert elapsed < FAST_FAIL_S, f"an open breaker took {elapsed:.3f} s, the upstream timeout is {UPSTREAM_TIMEOUT_S} s"
        assert len(github_standin.requests) == reached, "an open breaker let a call through to GitHub"
        await recover(server, github_standin)
        assert_serving(server, *texts, text_of(result))

    async def test_healthz_reports_open_with_the_failure_count(self, server, github_standin):
        await trip(server, github_standin, "502")
        breakers = health(server)["breakers"]
        assert breakers["github"] == {"state": "open", "failures": FAILURES_TO_OPEN}
        assert breakers["postgres"]["state"] == "closed", "one upstream's failures opened another's breaker"
        await recover(server, github_standin)

    async def test_one_failure_less_than_the_threshold_keeps_it_closed(self, server, github_standin):
        wait_for_breaker(server, "github", "closed")
        github_standin.fault = "500"
        async with mcp_session(server.url) as session:
            for _ in range(FAILURES_TO_OPEN - 1):
                await timed_search(session)
            github_standin.fault = None
            result, _ = await timed_search(session)
        assert not result.is_error and breaker_state(server, "github") == "closed"


class TestBreakerRecovers:
    async def test_half_open_probe_that_succeeds_closes_it(self, server, github_standin):
        await trip(server, github_standin, "500")
        await recover(server, github_standin)
        assert health(server)["breakers"]["github"] == {"state": "closed", "failures": 0}
        async with mcp_session(server.url) as session:
            result, _ = await timed_search(session)
        assert not result.is_error
        assert_serving(server)

    async def test_half_open_probe_that_fails_reopens_it(self, server, github_standin):
        await trip(server, github_standin, "500")
        wait_for_breaker(server, "github", "half_open")
        async with mcp_session(server.url) as session:
            probe, _ = await timed_search(session)
            assert probe.is_error and "failing (500)" in text_of(probe)
            assert breaker_state(server, "github") == "open"
            again, elapsed = await timed_search(session)
        assert "temporarily unavailable" in text_of(again) and elapsed < FAST_FAIL_S
        await recover(server, github_standin)
        assert_serving(server)
