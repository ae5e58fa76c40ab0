"""One circuit breaker per upstream: open after N consecutive failures, probe after a cool-down.

Threat model: a failing or hanging upstream must not tie up every worker and connection while each
call waits for its own timeout. After `breaker_failures` consecutive failures (an `UpstreamError`
or a timeout) the breaker opens and calls fail fast with a clear retry-after. After the cool-down
exactly one probe goes through (half-open); success closes the breaker, failure re-opens it.
Errors that say nothing about the upstream's health (bad arguments, denials) count neither way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import ToolResult

from app.capability_policy import NO_UPSTREAM, CapabilityPolicy, UpstreamLimits
from app.errors import CapabilityDenied, UpstreamError, deny
from app.middleware.dispatch import TypedMiddleware

Clock = Callable[[], float]
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# A breaker's state as a number, for the `mcp_tee.breaker.state` gauge.
BREAKER_LEVELS = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class BreakerOpen(CapabilityDenied):
    """The upstream's breaker is open (or its one half-open probe is in flight)."""

    layer = "breaker"

    def __init__(self, upstream: str, retry_after_s: int) -> None:
        super().__init__(f"{upstream} is temporarily unavailable; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    """A consecutive-failure breaker for one upstream.

    Args:
        limits: The upstream's `breaker_failures` and `breaker_cooldown_s`.
        clock: Monotonic seconds; injectable so tests never sleep.

    Example:
        >>> breaker = CircuitBreaker(policy.upstreams["github"])
        >>> with breaker.guard():
        ...     ...  # raise UpstreamError to count a failure
    """

    def __init__(self, limits: UpstreamLimits, clock: Clock = time.monotonic) -> None:
        self.upstream = limits.name
        self._threshold = limits.breaker_failures
        self._cooldown = limits.breaker_cooldown_s
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> str:
        """`closed`, `open` or `half_open` as of now (an expired cool-down reads as half-open)."""
        if self._state == OPEN and self._clock() - self._opened_at >= self._cooldown:
            return HALF_OPEN
        return self._state

    def _admit(self) -> bool:
        """Admit a call or raise; True when the admitted call is the half-open probe."""
        state = self.state
        if state == OPEN:
            raise BreakerOpen(self.upstream, max(1, math.ceil(self._cooldown - (self._clock() - self._opened_at))))
        if state == HALF_OPEN:
            if self._probe_in_flight:
                raise BreakerOpen(self.upstream, 1)
            self._state, self._probe_in_flight = HALF_OPEN, True
            return True
        return False

    def _record(self, healthy: bool | None, is_probe: bool) -> None:
        if is_probe:
            self._probe_in_flight = False
        if healthy is None:
            return
        if healthy:
            self._state, self._failures = CLOSED, 0
            return
        self._failures += 1
        if is_probe or self._failures >= self._threshold:
            self._state, self._opened_at = OPEN, self._clock()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Admit one call (or raise `BreakerOpen`) and record how it went."""
        is_probe = self._admit()
        try:
            yield
        except (UpstreamError, TimeoutError):
            self._record(healthy=False, is_probe=is_probe)
            raise
        except BaseException:
            self._record(healthy=None, is_probe=is_probe)
            raise
        self._record(healthy=True, is_probe=is_probe)

    def snapshot(self) -> dict[str, object]:
        """State and consecutive failure count, for `/healthz` and `attestation_status`."""
        return {"state": self.state, "failures": self._failures}


class Breakers:
    """All breakers, one per upstream named in the policy.

    Args:
        upstreams: Limits per upstream.
        clock: Monotonic seconds.
    """

    def __init__(self, upstreams: dict[str, UpstreamLimits], clock: Clock = time.monotonic) -> None:
        self._by_upstream = {name: CircuitBreaker(limits, clock) for name, limits in upstreams.items()}

    def __getitem__(self, upstream: str) -> CircuitBreaker:
        return self._by_upstream[upstream]

    def snapshot(self) -> dict[str, dict[str, object]]:
        """`{upstream: {"state": ..., "failures": n}}` for every upstream."""
        return {name: breaker.snapshot() for name, breaker in self._by_upstream.items()}


class BreakerMiddleware(TypedMiddleware):
    """Routes each call through its upstream's breaker and enforces the upstream timeout.

    Confirmation runs before this layer (see `app/middleware/stack.py`), so the user's answer is
    never inside a breaker's call. Writes (tools that require confirmation) are still not cut off
    by this layer's timeout: their upstream client enforces its own, and only it can tell whether
    a request may already have been delivered (at most once); a cancelled write would lose that
    answer. The client raises `UpstreamError`, which the breaker counts.

    Args:
        policy: The capability policy (tool → upstream, timeouts).
        breakers: The breakers, shared with `/healthz`.
    """

    def __init__(self, policy: CapabilityPolicy, breakers: Breakers) -> None:
        self._policy = policy
        self._breakers = breakers

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        tool_policy = self._policy.tool(context.message.name)
        if tool_policy is None:
            deny("unknown tool or not permitted", layer="breaker")
        if tool_policy.upstream == NO_UPSTREAM:
            return await call_next(context)
        limits = self._policy.upstreams[tool_policy.upstream]
        with self._breakers[tool_policy.upstream].guard():
            if tool_policy.confirm:  # a write: its client's own timeout decides (see the class docstring)
                return await call_next(context)
            try:
                async with asyncio.timeout(limits.timeout_s):  # unlike wait_for, no extra task per call
                    return await call_next(context)
            except TimeoutError:
                raise UpstreamError(limits.name, f"{limits.name} did not answer within {limits.timeout_s:g} s") from None
