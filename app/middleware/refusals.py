"""Refused calls cost a budget too: per principal and overall, so probing and flooding are bounded.

Threat model: a refused call does no work upstream, yet it still costs an audit record, and
undeclared tools are refused before the quota layer ever sees them. So a caller could flood the
audit log with refusals (an undeclared tool with a 3 MB name, twenty times a second) at no cost.
Here every denial (except the user's own "no" to a confirmation prompt) takes one token from the
principal's refusal bucket and one from the overall bucket. A principal whose bucket is empty is
refused at once, before any other layer runs; so is a principal with recent refusals while the
overall bucket is empty, which stops many tokens from adding up, while a principal with no recent
refusals is never held back by someone else's. Calls refused this way raise
`RefusalBudgetExhausted`, which the audit layer counts into one summary record instead of writing
one record each. Buckets key on the verified subject and live in a size-capped LRU map.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import ToolResult

from app.auth.principal import PrincipalProvider
from app.capability_policy import RefusalBudget
from app.confirmation import ConfirmationRefused
from app.errors import CapabilityDenied, deny
from app.middleware.dispatch import TypedMiddleware
from app.middleware.quotas import Clock, TokenBucket

MAX_TRACKED_PRINCIPALS = 10_000
RECENT_REFUSAL_S = 60.0  # a principal refused within this long counts as "recently refused"
UNRESOLVED = "unauthenticated"


class RefusalBudgetExhausted(CapabilityDenied):
    """The caller was refused so often that it is refused outright for a while."""

    layer = "refusal_budget"


class RefusalLedger:
    """Per-principal and overall token buckets of refused calls.

    Args:
        budget: The policy's refusal budget.
        clock: Monotonic seconds; injectable so tests never sleep.
        max_tracked: Cap on remembered principals; the least recently refused go first.

    Example:
        >>> ledger = RefusalLedger(load_policy().refusals)
        >>> ledger.charge("eve")
        >>> ledger.wait_time("eve")
        0.0
    """

    def __init__(self, budget: RefusalBudget, clock: Clock = time.monotonic,
                 max_tracked: int = MAX_TRACKED_PRINCIPALS) -> None:
        self._budget = budget
        self._clock = clock
        self._max_tracked = max_tracked
        self._overall = TokenBucket(budget.overall, clock)
        # subject -> (its bucket, when it was last refused)
        self._principals: OrderedDict[str, tuple[TokenBucket, float]] = OrderedDict()

    def wait_time(self, subject: str) -> float:
        """Seconds before `subject` may be refused again normally (0 when it may call now)."""
        tracked = self._principals.get(subject)
        if tracked is None or self._clock() - tracked[1] > RECENT_REFUSAL_S:
            return 0.0  # no recent refusals: nobody else's flood holds this caller back
        own_wait = tracked[0].wait_time()
        return own_wait if own_wait > 0 else self._overall.wait_time()

    def charge(self, subject: str) -> None:
        """Take one refusal from `subject`'s bucket and the overall bucket (never below empty)."""
        tracked = self._principals.get(subject)
        own = tracked[0] if tracked is not None else TokenBucket(self._budget.per_principal, self._clock)
        self._principals[subject] = (own, self._clock())
        self._principals.move_to_end(subject)
        if len(self._principals) > self._max_tracked:
            self._principals.popitem(last=False)
        for bucket in (own, self._overall):
            if bucket.wait_time() == 0:
                bucket.take()

    @property
    def tracked(self) -> int:
        """How many principals' refusals are remembered."""
        return len(self._principals)


class RefusalBudgetMiddleware(TypedMiddleware):
    """Refuses callers whose refusal budget is spent, and charges every denial from the layers inside.

    Sits just inside the audit layer, so the scope check, the guards and the quota layer all count.

    Args:
        ledger: The refusal buckets.
        principals: Resolves the caller.
    """

    def __init__(self, ledger: RefusalLedger, principals: PrincipalProvider) -> None:
        self._ledger = ledger
        self._principals = principals

    def _subject(self) -> str:
        try:
            return self._principals().subject
        except CapabilityDenied:
            return UNRESOLVED

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        subject = self._subject()
        wait = self._ledger.wait_time(subject)
        if wait > 0:
            deny(f"too many refused calls; retry after {math.ceil(wait)} s", layer=RefusalBudgetExhausted.layer,
                 error=RefusalBudgetExhausted)
        try:
            return await call_next(context)
        except ConfirmationRefused:
            raise  # the user's own "no" is not a probe
        except CapabilityDenied:
            self._ledger.charge(subject)
            raise
