"""Audit middleware: one redacted JSON record per tool call, allowed, denied or failed.

Threat model: the audit trail must be complete (a denial that leaves no trace hides a probe) and
must hold no secret (the file leaves the TEE). This layer is the outermost policy layer (inside only
the error boundary): it resolves the principal,
times the call, and records the outcome of everything inside, including denials raised by inner
layers, before re-raising them. Arguments are recorded as their shape plus a redacted copy;
tools whose arguments are data rather than intent record a summary instead (SQL: the statement's
SHA-256 and the row count; notifications: the message length and channel). A denial by any layer,
including the HTTP auth layer in front of MCP, is recorded as `allowed: false` with the layer's name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import InputRequiredToolResult, ToolResult

from app.audit.log import AuditLog
from app.auth.principal import PrincipalProvider
from app.auth.resource_server import HttpRefusal
from app.audit.redaction import Redactor
from app.confirmation import ConfirmationRefused
from app.errors import CapabilityDenied
from app.middleware.dispatch import TypedMiddleware
from app.tools.spec import AuditSummary

# Longest string kept in a recorded argument; the shape still records the full length.
MAX_RECORDED_CHARS = 256
UNAUTHENTICATED = "unauthenticated"

def argument_shape(value: Any) -> Any:
    """Types and lengths, never values."""
    if isinstance(value, Mapping):
        return {str(key): argument_shape(item) for key, item in value.items()}
    if isinstance(value, (str, bytes, list, tuple)):
        return {"type": type(value).__name__, "len": len(value)}
    return {"type": type(value).__name__}


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_RECORDED_CHARS:
        return value[:MAX_RECORDED_CHARS] + "…"
    if isinstance(value, dict):
        return {key: _clip(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clip(item) for item in value]
    return value


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

    def _subject(self) -> tuple[str, str | None]:
        try:
            principal = self._principals()
        except CapabilityDenied:
            return UNAUTHENTICATED, None
        return principal.subject, principal.token_id

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
        subject, token_id = self._subject()
        summary = self._summaries.get(tool)
        omitted = summary.omit if summary is not None else frozenset()
        record: dict[str, Any] = {
            "type": "call",
            "principal": subject,
            "token_id": token_id,
            "tool": tool,
            "decision": self._decision(error),
            "outcome": {"status": outcome_status(result, error),
                        "error": type(error).__name__ if error is not None else None},
            "latency_ms": round(latency_ms, 3),
            "args_shape": argument_shape(args),
            "args": _clip(self._redactor.redact({k: v for k, v in args.items() if k not in omitted})),
        }
        if summary is not None:
            record["summary"] = self._redactor.redact(summary.summarize(args, result))
        self._log.append(record)

    def _decision(self, error: BaseException | None) -> dict[str, Any]:
        if isinstance(error, CapabilityDenied):
            return {"allowed": False, "layer": error.layer, "reason": self._redactor.redact_text(str(error))}
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
        "path": _clip(redactor.redact_text(refusal.path)),
        "decision": {"allowed": False, "layer": "auth", "reason": redactor.redact_text(refusal.reason)},
        "outcome": {"status": str(refusal.status), "error": None},
    })
