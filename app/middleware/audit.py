"""Audit middleware: one redacted JSON record per tool call, allowed, denied or failed.

Threat model: the audit trail must be complete (a denial that leaves no trace hides a probe) and
must hold no secret (the file leaves the TEE). This layer is the outermost policy layer (inside only
the error boundary): it resolves the principal,
times the call, and records the outcome of everything inside, including denials raised by inner
layers, before re-raising them. Arguments are recorded as their shape plus a redacted copy;
tools whose arguments are data rather than intent record a summary instead (SQL: the statement's
SHA-256 and the row count; notifications: the message length and channel). A denial by any layer,
including the HTTP auth layer in front of MCP, is recorded as `allowed: false` with the layer's name.
Every caller-chosen string (tool name, argument names and values) is clipped and hashed
(`app.audit.clipping`), so one call writes a bounded record. Calls refused because the caller's
refusal budget is spent (`RefusalBudgetExhausted`) are counted per principal into one `suppressed`
record (written after `SUPPRESSED_FLUSH_EVERY` calls or `SUPPRESSED_FLUSH_AFTER_S`, and at close)
rather than one record each, which bounds what a flood can write.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import InputRequiredToolResult, ToolResult

from app.audit.clipping import MAX_DEPTH, MAX_NAME_CHARS, clip_mapping, clip_text, clip_value
from app.audit.log import AuditLog
from app.auth.principal import PrincipalProvider
from app.auth.resource_server import HttpRefusal
from app.audit.redaction import Redactor
from app.confirmation import ConfirmationRefused
from app.errors import CapabilityDenied
from app.middleware.dispatch import TypedMiddleware
from app.middleware.refusals import RefusalBudgetExhausted
from app.tools.spec import AuditSummary

UNAUTHENTICATED = "unauthenticated"
SUPPRESSED_FLUSH_EVERY = 1000
SUPPRESSED_FLUSH_AFTER_S = 60.0
MAX_SUPPRESSED_PRINCIPALS = 10_000


def argument_shape(value: Any, depth: int = 0) -> Any:
    """Types and lengths, never values; as wide and as deep as `clip_value` allows."""
    if isinstance(value, Mapping) and depth < MAX_DEPTH:
        return clip_mapping(value, lambda key, item: argument_shape(item, depth + 1))
    if isinstance(value, (str, bytes, list, tuple, Mapping)):
        return {"type": type(value).__name__, "len": len(value)}
    return {"type": type(value).__name__}


class SuppressedRefusals:
    """Per-principal counts of calls refused by the refusal budget, due as one record each in a while.

    Args:
        clock: Monotonic seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, list[float]] = OrderedDict()  # subject -> [count, first seen]

    def add(self, subject: str) -> list[dict[str, Any]]:
        """Count one suppressed call; returns the summary records now due."""
        with self._lock:
            entry = self._pending.setdefault(subject, [0, self._clock()])
            entry[0] += 1
            due = [subject] if entry[0] >= SUPPRESSED_FLUSH_EVERY else []
            if len(self._pending) > MAX_SUPPRESSED_PRINCIPALS:
                due.append(next(iter(self._pending)))
            return self._pop(due) + self._pop_old()

    def due(self) -> list[dict[str, Any]]:
        """Summary records whose window has passed."""
        with self._lock:
            return self._pop_old()

    def drain(self) -> list[dict[str, Any]]:
        """Every pending summary record (at close)."""
        with self._lock:
            return self._pop(list(self._pending))

    def _pop_old(self) -> list[dict[str, Any]]:
        # Entries sit in the order they were first seen, so the old ones are a prefix.
        cutoff = self._clock() - SUPPRESSED_FLUSH_AFTER_S
        old = []
        for subject, (_, first) in self._pending.items():
            if first > cutoff:
                break
            old.append(subject)
        return self._pop(old)

    def _pop(self, subjects: list[str]) -> list[dict[str, Any]]:
        records = []
        for subject in dict.fromkeys(subjects):
            count, first = self._pending.pop(subject)
            records.append({"type": "suppressed", "principal": subject, "refused_calls": int(count),
                            "window_s": round(self._clock() - first, 3),
                            "decision": {"allowed": False, "layer": RefusalBudgetExhausted.layer}})
        return records


class AuditMiddleware(TypedMiddleware):
    """Records every tool call; must be the outermost capability layer.

    Args:
        log: The chained audit log.
        redactor: Scrubs everything recorded.
        principals: Resolves the caller (an unresolved caller is recorded as `unauthenticated`).
        summaries: Per tool, the arguments never recorded and the summary that replaces them.

    Example:
        >>> FastMCP("x", middleware=[AuditMiddleware(log, redactor, PrincipalProvider(False)), ...])
    """

    def __init__(self, log: AuditLog, redactor: Redactor, principals: PrincipalProvider,
                 summaries: Mapping[str, AuditSummary] | None = None) -> None:
        self._log = log
        self._redactor = redactor
        self._principals = principals
        self._summaries = dict(summaries or {})
        self._suppressed = SuppressedRefusals()
        log.before_close(self._write_suppressed)

    def _write_suppressed(self) -> None:
        for record in self._suppressed.drain():
            self._log.append(record)

    def _subject(self) -> tuple[str, str | None, dict[str, Any] | None]:
        try:
            principal = self._principals()
        except CapabilityDenied:
            return UNAUTHENTICATED, None, None
        # A delegated call records its chain: root principal, each block's revocation id and context.
        delegation = principal.delegation.audit_record() if principal.delegation is not None else None
        return principal.subject, principal.token_id, delegation

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        started = time.perf_counter()
        result: ToolResult | None = None
        error: BaseException | None = None
        try:
            result = await call_next(context)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._record(context.message.name, dict(context.message.arguments or {}), result, error,
                         (time.perf_counter() - started) * 1000)

    def _record(self, tool: str, args: dict[str, Any], result: ToolResult | None,
                error: BaseException | None, latency_ms: float) -> None:
        subject, token_id, delegation = self._subject()
        if isinstance(error, RefusalBudgetExhausted):
            for due in self._suppressed.add(subject):
                self._log.append(due)
            return
        for due in self._suppressed.due():
            self._log.append(due)
        decision, status = self._decision(error), outcome_status(result, error)
        error_name = type(error).__name__ if error is not None else None
        summary = self._summaries.get(tool)
        redactor = self._redactor.frozen()  # the secrets of this moment, though the record is built later
        summarized = result if summary is not None else None  # nothing else of the result is kept

        def build() -> dict[str, Any]:
            # Called when the batch is chained, after the response: redaction and clipping cost the call nothing.
            record: dict[str, Any] = {
                "type": "call",
                "principal": subject,
                "token_id": token_id,
                "tool": clip_text(tool, MAX_NAME_CHARS, redactor.redact_text),
                "decision": decision,
                "outcome": {"status": status, "error": error_name},
                "latency_ms": round(latency_ms, 3),
            }
            try:
                omitted = summary.omit if summary is not None else frozenset()
                record["args_shape"] = argument_shape(args)
                record["args"] = clip_value({k: v for k, v in args.items() if k not in omitted}, redactor.redact_text)
                if delegation is not None:
                    record["delegation"] = redactor.redact(delegation)
                if summary is not None:
                    record["summary"] = redactor.redact(summary.summarize(args, summarized))
            except Exception as exc:  # noqa: BLE001 - who called what, and the decision, are always kept
                record["unrecorded"] = type(exc).__name__
            return record

        self._log.append(build)

    def _decision(self, error: BaseException | None) -> dict[str, Any]:
        if isinstance(error, CapabilityDenied):
            reason = clip_text(str(error), redact=self._redactor.redact_text)
            return {"allowed": False, "layer": error.layer, "reason": reason}
        return {"allowed": True, "reason": "policy"}


def outcome_status(result: ToolResult | None, error: BaseException | None) -> str:
    """`ok` only when the tool did its work; a question to the user, a refusal to write and failures differ."""
    if isinstance(error, ConfirmationRefused):
        return "not_sent"  # declined, cancelled, timed out or unsupported: nothing was written
    if error is not None or (result is not None and result.is_error):
        return "error"
    if isinstance(result, InputRequiredToolResult):
        return "input_required"  # MCP 2026-07-28: the call asked the user and did nothing yet
    return "ok"


def record_http_refusal(log: AuditLog, redactor: Redactor, refusal: HttpRefusal) -> None:
    """Audit a refusal at the HTTP layer as a denial, like any other; the token itself is never recorded."""
    log.append({
        "type": "http",
        "principal": refusal.principal or UNAUTHENTICATED,
        "path": clip_text(refusal.path, redact=redactor.redact_text),
        "decision": {"allowed": False, "layer": refusal.layer, "reason": redactor.redact_text(refusal.reason)},
        "outcome": {"status": str(refusal.status), "error": None},
    })
