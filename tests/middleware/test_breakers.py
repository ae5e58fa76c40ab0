"""Circuit breakers: open after N failures, fail fast, one half-open probe, close on success."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.middleware.breakers import BreakerOpen, CircuitBreaker
from app.capability_policy import load_policy
from app.errors import InvalidArgument, UpstreamError
from tests.support.stack import FakeClock, Stack, free_port, policy_with, serve

QUERY = {"query": "bug"}


def _breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(load_policy().upstreams["github"], clock)  # 5 failures, 30 s cool-down


def _fail(breaker: CircuitBreaker, error: Exception | None = None) -> None:
    with pytest.raises(type(error or UpstreamError("github", "x"))):
        with breaker.guard():
            raise error or UpstreamError("github", "boom")


def _succeed(breaker: CircuitBreaker) -> None:
    with breaker.guard():
        pass


class TestCircuitBreaker:
    def test_stays_closed_below_the_threshold(self):
        breaker = _breaker(FakeClock())
        for _ in range(4):
            _fail(breaker)
        assert breaker.snapshot() == {"state": "closed", "failures": 4}
        _succeed(breaker)
        assert breaker.snapshot() == {"state": "closed", "failures": 0}

    def test_opens_after_consecutive_failures_and_fails_fast(self):
        breaker = _breaker(FakeClock())
        for _ in range(5):
            _fail(breaker)
        with pytest.raises(BreakerOpen, match="github is temporarily unavailable; retry after 30 s"):
            _succeed(breaker)

    def test_timeouts_count_as_failures(self):
        breaker = _breaker(FakeClock())
        for _ in range(5):
            _fail(breaker, TimeoutError())
        assert breaker.state == "open"

    def test_errors_unrelated_to_upstream_health_do_not_count(self):
        breaker = _breaker(FakeClock())
        for _ in range(10):
            _fail(breaker, InvalidArgument("bad query"))
        assert breaker.state == "closed"

    def test_half_open_admits_exactly_one_probe(self):
        clock = FakeClock()
        breaker = _breaker(clock)
        for _ in range(5):
            _fail(breaker)
        clock.advance(30)
        assert breaker.state == "half_open"
        with breaker.guard():
            with pytest.raises(BreakerOpen):
                _succeed(breaker)
        assert breaker.state == "closed"

    def test_failed_probe_reopens_for_another_cool_down(self):
        clock = FakeClock()
        breaker = _breaker(clock)
        for _ in range(5):
            _fail(breaker)
        clock.advance(30)
        _fail(breaker)
        assert breaker.state == "open"
        clock.advance(29)
        with pytest.raises(BreakerOpen, match="retry after 1 s"):
            _succeed(breaker)


def _stand_in(mode: dict) -> Starlette:
    """A GitHub stand-in whose behaviour the test switches: ok, 5xx or hang."""
    async def search(request):
        mode["hits"] += 1
        if mode["kind"] == "hang":
            await asyncio.sleep(3)
        if mode["kind"] == "5xx":
            return JSONResponse({"message": "boom"}, status_code=503)
        return JSONResponse({"items": []})
    return Starlette(routes=[Route("/search/issues", search)])


class TestBreakerThroughServer:
    @pytest.mark.parametrize("fault", ["5xx", "hang", "refused"])
    async def test_fault_opens_then_fails_fast_then_recovers(self, tmp_path, fault):
        policy = policy_with({"upstreams": {"github": {"breaker_failures": 2, "timeout_s": 0.3}}})
        stack = Stack(tmp_path, policy=policy)
        mode = {"kind": fault, "hits": 0}
        with serve(_stand_in(mode)) as base:
            good_url = f"{base}/search/issues"
            stack.github_url = f"http://127.0.0.1:{free_port()}/search/issues" if fault == "refused" else good_url
            async with stack.client() as client:
                for _ in range(2):
                    assert (await client.call_tool("github_search_issues", QUERY, raise_on_error=False)).is_error
                assert stack.breakers.snapshot()["github"]["state"] == "open"

                hits = mode["hits"]
                fast = await client.call_tool("github_search_issues", QUERY, raise_on_error=False)
                assert fast.is_error and "github is temporarily unavailable; retry after 30 s" in fast.content[0].text
                assert mode["hits"] == hits, "an open breaker must not touch the upstream"

                mode["kind"], stack.github_url = "ok", good_url
                stack.clock.advance(30)
                assert not (await client.call_tool("github_search_issues", QUERY)).is_error
                assert stack.breakers.snapshot()["github"] == {"state": "closed", "failures": 0}

    async def test_other_upstreams_are_unaffected(self, tmp_path):
        stack = Stack(tmp_path)
        stack.upstream_fault = UpstreamError("github", "down")
        async with stack.client() as client:
            for _ in range(5):
                await client.call_tool("github_search_issues", QUERY, raise_on_error=False)
            assert not (await client.call_tool("query_database", {"sql": "select 1"})).is_error
        assert stack.breakers.snapshot()["github"]["state"] == "open"
        assert stack.breakers.snapshot()["postgres"]["state"] == "closed"
