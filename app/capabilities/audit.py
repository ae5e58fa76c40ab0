"""Audit middleware: one redacted JSON record per tool call, allowed, denied or failed.

Threat model: the audit trail must be complete (a denial that leaves no trace hides a probe) and
must hold no secret (the file leaves the TEE). This layer is outermost: it resolves the principal,
times the call, and records the outcome of everything inside, including denials raised by inner
layers, before re-raising them. Arguments are recorded as their shape plus a redacted copy;
tools whose arguments are data rather than intent record a summary instead (SQL: the statement's
SHA-256 and the row count; notifications: the message length and channel).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import mcp_types as mt
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult

from app.capabilities.audit_log import AuditLog
from app.capabilities.principal import PrincipalProvider
from app.capabilities.redaction import Redactor
from app.errors import CapabilityDenied

# Longest string kept in a recorded argument; the shape still records the full length.
MAX_RECORDED_CHARS = 256
UNAUTHENTICATED = "unauthenticated"

Summarizer = Callable[[Mapping[str, Any], ToolResult | None], dict[str, Any]]


def _sql_summary(args: Mapping[str, Any], result: ToolResult | None) -> dict[str, Any]:
    sql = args.get("sql")
    structured = result.structured_content if result is not None else None
    structured = structured if isinstance(structured, dict) else {}
    return {
        "sql_sha256": hashlib.sha256(sql.encode()).hexdigest() if isinstance(sql, str) else None,
        # Groups statements by shape without their literals (pglast's fingerprint).
        "sql_fingerprint": structured.get("statement_fingerprint"),
        "row_count": structured.get("row_count"),
    }


def _notification_summary(args: Mapping[str, Any], result: ToolResult | None) -> dict[str, Any]:
    message = args.get("message")
    return {"message_length": len(message) if isinstance(message, str) else None,
            "channel": args.get("channel", "general")}


def _credential_summary(args: Mapping[str, Any], result: ToolResult | None) -> dict[str, Any]:
    structured = result.structured_content if result is not None else None
    return {"kind": structured.get("kind") if isinstance(structured, dict) else None}


# Per tool: which arguments are never recorded, and the summary that replaces them.
SUMMARY_HOOKS: dict[str, tuple[frozenset[str], Summarizer]] = {
    "query_database": (frozenset({"sql"}), _sql_summary),
    "send_notification": (frozenset({"message"}), _notification_summary),
    "provide_session_credentials": (frozenset({"sealed"}), _credential_summary),
}


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


class AuditMiddleware(Middleware):
    """Records every tool call; must be the outermost capability layer.

    Args:
        log: The chained audit log.
        redactor: Scrubs everything recorded.
        principals: Resolves the caller (an unresolved caller is recorded as `unauthenticated`).

    Example:
        >>> FastMCP("x", middleware=[AuditMiddleware(log, redactor, PrincipalProvider(False)), ...])
    """

    def __init__(self, log: AuditLog, redactor: Redactor, principals: PrincipalProvider) -> None:
        self._log = log
        self._redactor = redactor
        self._principals = principals

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
        denied = isinstance(error, CapabilityDenied)
        omitted, summarize = SUMMARY_HOOKS.get(tool, (frozenset(), None))
        record: dict[str, Any] = {
            "type": "call",
            "principal": subject,
            "token_id": token_id,
            "tool": tool,
            "decision": {"allowed": not denied, "reason": self._redactor.redact_text(str(error)) if denied else "policy"},
            "outcome": {"status": "error" if error is not None or (result is not None and result.is_error) else "ok",
                        "error": type(error).__name__ if error is not None else None},
            "latency_ms": round(latency_ms, 3),
            "args_shape": argument_shape(args),
            "args": _clip(self._redactor.redact({k: v for k, v in args.items() if k not in omitted})),
        }
        if summarize is not None:
            record["summary"] = self._redactor.redact(summarize(args, result))
        self._log.append(record)
