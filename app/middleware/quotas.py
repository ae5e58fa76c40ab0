"""Per-principal and global token-bucket rate limits, and concurrency caps per upstream.

Threat model: one caller (or a runaway agent loop) must not exhaust an upstream's own rate limits
or our connection pool for everybody. Buckets key on the verified JWT `sub`, use a monotonic
clock (wall-clock jumps neither refill nor drain them) and live in a size-capped LRU map, so a
flood of distinct subjects cannot grow memory without bound. A call over the concurrency cap waits
a short, fixed time for a slot and is then denied, so bursts smooth out but nothing queues forever.
One principal holds at most its fair share of an upstream's slots (half by default), so a reader
whose queries all run into the statement timeout cannot lock everybody else out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import asynccontextmanager
from typing import AsyncIterator

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import ToolResult

from app.capability_policy import NO_UPSTREAM, CapabilityPolicy, Quota, UpstreamLimits
from app.auth.principal import PrincipalProvider
from app.errors import CapabilityDenied, deny
from app.middleware.dispatch import TypedMiddleware

Clock = Callable[[], float]
MAX_TRACKED_BUCKETS = 10_000


class QuotaExceeded(CapabilityDenied):
    """A rate limit or concurrency cap refused the call.

    Args:
        message: What was exceeded, secret-free.
        retry_after_s: Whole seconds after which a retry can succeed.
    """

    layer = "quota"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(f"{message}; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class TokenBucket:
    """A classic token bucket.

    Args:
        quota: Refill rate (per minute) and capacity.
        clock: Monotonic seconds; injectable so tests never sleep.
    """

    def __init__(self, quota: Quota, clock: Clock) -> None:
        self._rate_per_s = quota.per_minute / 60.0
        self._capacity = float(quota.burst)
        self._tokens = float(quota.burst)
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate_per_s)
        self._updated = now

    def wait_time(self) -> float:
        """Seconds until one token is available (0 when one is available now)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate_per_s

    def take(self) -> None:
        """Consume one token; call only after `wait_time()` returned 0."""
        self._tokens -= 1.0


def take_from_each(*buckets: TokenBucket) -> tuple[int, float] | None:
    """One token from every bucket, or none at all (a refused call costs nothing).

    Returns:
        None when the tokens were taken; otherwise the index of the first bucket that is empty and
        the seconds until it has a token.
    """
    for index, bucket in enumerate(buckets):
        wait = bucket.wait_time()
        if wait > 0:
            return index, wait
    for bucket in buckets:
        bucket.take()
    return None


class BucketsByKey:
    """One token bucket per key, in a size-capped LRU map: the least recently used key is forgotten first.

    Args:
        clock: Monotonic seconds.
        max_tracked: Keys remembered at most, so a flood of distinct keys cannot grow memory.

    Example:
        >>> sources = BucketsByKey(time.monotonic, max_tracked=4096)
        >>> sources.bucket("203.0.113.7", Quota(per_minute=30, burst=5)).wait_time()
        0.0
    """

    def __init__(self, clock: Clock, max_tracked: int) -> None:
        self._clock = clock
        self._max_tracked = max_tracked
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def bucket(self, key: Hashable, quota: Quota) -> TokenBucket:
        """The bucket of `key`, made full with `quota` when the key is new (or was forgotten)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(quota, self._clock)
            if len(self._buckets) > self._max_tracked:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """Per-(principal, tool) buckets plus one global bucket.

    Args:
        policy: Supplies each tool's quota and the global quota.
        clock: Monotonic seconds.
        max_tracked: Cap on remembered (principal, tool) buckets; the least recently used go first.

    Example:
        >>> limiter = RateLimiter(load_policy())
        >>> limiter.check("alice", "query_database")
    """

    def __init__(self, policy: CapabilityPolicy, clock: Clock = time.monotonic,
                 max_tracked: int = MAX_TRACKED_BUCKETS) -> None:
        self._policy = policy
        self._global = TokenBucket(policy.global_quota, clock)
        self._buckets = BucketsByKey(clock, max_tracked)

    def check(self, subject: str, tool: str) -> None:
        """Consume one call for `subject` on `tool`, or raise `QuotaExceeded` and consume nothing."""
        tool_policy = self._policy.tool(tool)
        if tool_policy is None:
            deny("unknown tool or not permitted", layer="quota")
        refused = take_from_each(self._buckets.bucket((subject, tool), tool_policy.quota), self._global)
        if refused is not None:
            empty, wait = refused
            scope = f"rate limit for {tool!r}" if empty == 0 else "server-wide rate limit"
            raise QuotaExceeded(f"{scope} exceeded", math.ceil(wait))

    @property
    def tracked(self) -> int:
        """How many (principal, tool) buckets are remembered."""
        return len(self._buckets)


class UpstreamSlots:
    """Concurrency caps: one semaphore per upstream, and a fair share of it per principal.

    Args:
        upstreams: Limits per upstream name; `queue_s` is how long a call waits for a free slot,
            `principal_share` how many slots one principal may hold at once.
        wait_s: Overrides every upstream's `queue_s` (tests).

    Example:
        >>> slots = UpstreamSlots(load_policy().upstreams)
        >>> async with slots.hold("postgres", "alice"):
        ...     ...
    """

    def __init__(self, upstreams: dict[str, UpstreamLimits], wait_s: float | None = None) -> None:
        self._waits = {name: limits.queue_s if wait_s is None else wait_s for name, limits in upstreams.items()}
        self._slots = {name: asyncio.Semaphore(limits.max_concurrency) for name, limits in upstreams.items()}
        self._shares = {name: limits.principal_share for name, limits in upstreams.items()}
        # (upstream, subject) -> [that principal's semaphore, calls holding or waiting for it].
        # An entry lives only while a call uses it, so the map is bounded by the calls in flight.
        self._own: dict[tuple[str, str], list] = {}

    @asynccontextmanager
    async def hold(self, upstream: str, subject: str) -> AsyncIterator[None]:
        """Hold one slot of `upstream`, within `subject`'s share, for the duration of the block."""
        if upstream == NO_UPSTREAM:
            yield
            return
        key = (upstream, subject)
        own = self._own.setdefault(key, [asyncio.Semaphore(self._shares[upstream]), 0])
        own[1] += 1
        try:
            deadline = time.monotonic() + self._waits[upstream]
            if not await _acquire(own[0], deadline):
                raise QuotaExceeded(f"too many concurrent calls to {upstream} from this principal "
                                    f"(at most {self._shares[upstream]} at once)", 1)
            try:
                if not await _acquire(self._slots[upstream], deadline):
                    raise QuotaExceeded(f"too many concurrent calls to {upstream}", 1)
                try:
                    yield
                finally:
                    self._slots[upstream].release()
            finally:
                own[0].release()
        finally:
            own[1] -= 1
            if not own[1]:
                del self._own[key]


async def _acquire(semaphore: asyncio.Semaphore, deadline: float) -> bool:
    """Take `semaphore` before the monotonic `deadline`; False when it stayed full."""
    if not semaphore.locked():
        await semaphore.acquire()  # free now: no timer task on the common path
        return True
    try:
        await asyncio.wait_for(semaphore.acquire(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return False
    return True


class QuotaMiddleware(TypedMiddleware):
    """Applies rate limits, then holds an upstream concurrency slot around the call.

    Args:
        policy: The capability policy.
        principals: Resolves the caller.
        limiter: Rate limiter (defaults to one built from the policy).
        slots: Concurrency caps (defaults to one built from the policy).
    """

    def __init__(self, policy: CapabilityPolicy, principals: PrincipalProvider,
                 limiter: RateLimiter | None = None, slots: UpstreamSlots | None = None) -> None:
        self._policy = policy
        self._principals = principals
        self.limiter = limiter or RateLimiter(policy)
        self.slots = slots or UpstreamSlots(policy.upstreams)

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        name = context.message.name
        tool_policy = self._policy.tool(name)
        if tool_policy is None:
            # Fail closed even if an outer layer was left out.
            deny("unknown tool or not permitted", layer="quota")
        subject = self._principals().subject
        self.limiter.check(subject, name)
        async with self.slots.hold(tool_policy.upstream, subject):
            return await call_next(context)

