"""Audit backpressure: refuse tool calls while the audit store cannot take more records (fail closed).

Threat model: a call whose audit record might be lost must not run. When the shipping sink's
bounded buffer is full (the store is down or slow), this outermost layer refuses new calls with a
clear tool error before they reach auth, policy or any upstream. A refusal cannot get a record of
its own, since there is no room, which is the point; so refusals are counted per principal and
tool in a bounded map, and one summary record is appended as soon as the log has room again (or
at shutdown). A probe during an outage still leaves a trace.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import ToolResult

from app.audit.log import AuditLog
from app.middleware.audit import UNAUTHENTICATED
from app.auth.principal import PrincipalProvider
from app.errors import CapabilityDenied, deny
from app.middleware.dispatch import TypedMiddleware

# Distinct (principal, tool) pairs counted before the rest are lumped together.
MAX_REFUSAL_KEYS = 1000
OTHERS = ("*", "*")
REFUSAL_RECORD = "refused_while_audit_unavailable"


class AuditUnavailable(CapabilityDenied):
    """The audit store is not taking records; the call was refused and did not run."""


class AuditBackpressureMiddleware(TypedMiddleware):
    """Refuses tool calls while `log.has_room()` is False; must sit outside the audit layer.

    Args:
        log: The audit log (its sink decides when it is full).
        principals: Names the caller in the refusal summary.

    Example:
        >>> gate = AuditBackpressureMiddleware(log, principals)
        >>> FastMCP("x", middleware=[gate, AuditMiddleware(log, redactor, principals), ...])
        >>> log.close()  # writes the refusal summary, then the final checkpoint
    """

    def __init__(self, log: AuditLog, principals: PrincipalProvider) -> None:
        self._log = log
        self._principals = principals
        self._lock = threading.Lock()
        self._refused: Counter[tuple[str, str]] = Counter()
        self._since: str | None = None
        log.before_close(self.flush)  # refusals counted while the store was down, before the final checkpoint

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        if not self._log.has_room():
            self._count(context.message.name)
            # Fail closed: the record of this call could not be kept, so the call does not run.
            deny("the audit store is unavailable, so calls are refused for now; retry later", layer="audit",
                 error=AuditUnavailable)
        self.flush()
        return await call_next(context)

    def _count(self, tool: str) -> None:
        try:
            principal = self._principals().subject
        except CapabilityDenied:
            principal = UNAUTHENTICATED
        with self._lock:
            self._since = self._since or datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            key = (principal, tool)
            if key not in self._refused and len(self._refused) >= MAX_REFUSAL_KEYS:
                key = OTHERS
            self._refused[key] += 1

    def flush(self) -> None:
        """Append the summary of refusals counted so far, if any (call at shutdown too)."""
        with self._lock:
            if not self._refused:
                return
            counts = [{"principal": principal, "tool": tool, "count": count}
                      for (principal, tool), count in sorted(self._refused.items())]
            since, self._since = self._since, None
            self._refused.clear()
        self._log.append({"type": REFUSAL_RECORD, "since": since, "refusals": counts})
