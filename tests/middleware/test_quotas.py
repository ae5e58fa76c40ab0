"""Token-bucket quotas per principal and globally, with retry-after; concurrency caps per upstream."""

from __future__ import annotations

import asyncio

import pytest

from app.capability_policy import load_policy
from app.middleware.quotas import QuotaExceeded, RateLimiter, UpstreamSlots
from tests.support.stack import DELETE, FakeClock, Stack, policy_with

SQL = {"sql": "select 1"}


class TestPerPrincipalLimit:
    def test_burst_then_refused_with_retry_after(self):
        clock = FakeClock()
        limiter = RateLimiter(load_policy(), clock=clock)  # query_database: 60/min, burst 10
        for _ in range(10):
            limiter.check("alice", "query_database")
        with pytest.raises(QuotaExceeded, match=r"rate limit for 'query_database' exceeded; retry after 1 s") as refused:
            limiter.check("alice", "query_database")
        assert refused.value.retry_after_s == 1

    def test_refills_with_time(self):
        clock = FakeClock()
        limiter = RateLimiter(load_policy(), clock=clock)
        for _ in range(10):
            limiter.check("alice", "query_database")
        clock.advance(1.0)
        limiter.check("alice", "query_database")

    def test_one_principal_does_not_drain_another(self):
        limiter = RateLimiter(load_policy(), clock=FakeClock())
        for _ in range(10):
            limiter.check("alice", "query_database")
        limiter.check("bob", "query_database")

    def test_retry_after_reflects_slow_tools(self):
        limiter = RateLimiter(load_policy(), clock=FakeClock())  # send_notification: 10/min, burst 3
        for _ in range(3):
            limiter.check("alice", "send_notification")
        with pytest.raises(QuotaExceeded) as refused:
            limiter.check("alice", "send_notification")
        assert refused.value.retry_after_s == 6


class TestGlobalLimit:
    def test_many_principals_hit_the_global_bucket(self):
        policy = policy_with({"global": {"per_minute": 60, "burst": 5}})
        limiter = RateLimiter(policy, clock=FakeClock())
        for subject in "abcde":
            limiter.check(subject, "query_database")
        with pytest.raises(QuotaExceeded, match="server-wide rate limit exceeded; retry after 1 s"):
            limiter.check("f", "query_database")

    def test_a_refused_call_consumes_nothing(self):
        policy = policy_with({"global": {"per_minute": 60, "burst": 1}})
        clock = FakeClock()
        limiter = RateLimiter(policy, clock=clock)
        limiter.check("a", "query_database")
        with pytest.raises(QuotaExceeded):
            limiter.check("a", "query_database")
        clock.advance(1.0)
        limiter.check("a", "query_database")


class TestBoundedMemory:
    def test_tracked_buckets_are_capped(self):
        policy = policy_with({"global": {"burst": 100000}})
        limiter = RateLimiter(policy, clock=FakeClock(), max_tracked=100)
        for index in range(1000):
            limiter.check(f"subject-{index}", "attestation_status")
        assert limiter.tracked == 100


class TestQuotaThroughServer:
    async def test_eleventh_call_is_a_tool_error_with_retry_after(self, tmp_path):
        stack = Stack(tmp_path)
        async with stack.client() as client:
            for _ in range(10):
                assert not (await client.call_tool("query_database", SQL)).is_error
            refused = await client.call_tool("query_database", SQL, raise_on_error=False)
            assert refused.is_error and "retry after 1 s" in refused.content[0].text
            stack.clock.advance(1.0)
            assert not (await client.call_tool("query_database", SQL)).is_error


class TestConcurrencyCap:
    async def test_call_over_the_cap_is_refused_after_its_queue_time(self, tmp_path):
        stack = Stack(tmp_path, policy=policy_with(
            {"upstreams": {"github": {"max_concurrency": 1, "queue_s": 0.1}}}))
        stack.gate = asyncio.Event()
        async with stack.client() as client:
            first = asyncio.create_task(client.call_tool("github_search_issues", {"query": "a"}))
            await asyncio.sleep(0.05)
            second = await client.call_tool("github_search_issues", {"query": "b"}, raise_on_error=False)
            stack.gate.set()
            assert not (await first).is_error
        assert second.is_error and "too many concurrent calls to github" in second.content[0].text

    async def test_calls_within_the_cap_all_run(self, tmp_path):
        stack = Stack(tmp_path, policy=policy_with({"upstreams": {"github": {"max_concurrency": 2}}}))
        stack.gate = asyncio.Event()
        async with stack.client() as client:
            calls = [asyncio.create_task(client.call_tool("github_search_issues", {"query": q})) for q in "ab"]
            await asyncio.sleep(0.05)
            stack.gate.set()
            assert not any(result.is_error for result in await asyncio.gather(*calls))

    async def test_a_queued_call_runs_when_a_slot_frees_within_its_queue_time(self):
        slots = UpstreamSlots(load_policy().upstreams)  # github: queue_s = 2 in the packaged policy
        held = asyncio.Event()

        async def first():
            async with slots.hold("github", "alice"):
                held.set()
                await asyncio.sleep(0.1)

        for _ in range(7):  # fill all but one of github's 8 slots for the whole test
            await slots._slots["github"].acquire()
        task = asyncio.create_task(first())
        await held.wait()
        async with slots.hold("github", "bob"):  # waits ~0.1 s for the first call's slot instead of being refused
            pass
        await task

    async def test_slot_is_released_after_the_call(self):
        slots = UpstreamSlots(load_policy().upstreams, wait_s=0.01)
        for _ in range(5):
            async with slots.hold("webhook", "alice"):
                pass
        async with slots.hold("webhook", "alice"), slots.hold("webhook", "bob"):
            with pytest.raises(QuotaExceeded, match="too many concurrent calls to webhook; retry"):
                async with slots.hold("webhook", "carol"):
                    pass


class TestFairShare:
    """Issue 13, finding 7: one reader must not hold every slot of an upstream."""

    def _slots(self, **postgres) -> UpstreamSlots:
        postgres.setdefault("max_per_principal", DELETE)  # the default share: half
        return UpstreamSlots(policy_with({"upstreams": {"postgres": postgres}}).upstreams, wait_s=0.01)

    async def test_one_principal_holds_at_most_half_and_another_still_gets_a_slot(self):
        slots = self._slots(max_concurrency=4)
        async with slots.hold("postgres", "mallory"), slots.hold("postgres", "mallory"):
            with pytest.raises(QuotaExceeded, match="from this principal \\(at most 2 at once\\)"):
                async with slots.hold("postgres", "mallory"):
                    pass
            async with slots.hold("postgres", "victim"):
                pass

    async def test_the_share_is_configurable_per_upstream(self):
        slots = self._slots(max_concurrency=4, max_per_principal=1)
        async with slots.hold("postgres", "mallory"):
            with pytest.raises(QuotaExceeded, match="at most 1 at once"):
                async with slots.hold("postgres", "mallory"):
                    pass

    async def test_a_single_slot_upstream_still_admits_one_call(self):
        slots = self._slots(max_concurrency=1)
        async with slots.hold("postgres", "alice"):
            pass

    async def test_per_principal_state_is_dropped_when_its_calls_end(self):
        slots = self._slots(max_concurrency=4)
        for subject in (f"agent-{n}" for n in range(100)):
            async with slots.hold("postgres", subject):
                pass
        with pytest.raises(QuotaExceeded):
            async with slots.hold("postgres", "m"), slots.hold("postgres", "m"), slots.hold("postgres", "m"):
                pass
        assert slots._own == {}
