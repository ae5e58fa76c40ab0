"""Telemetry middleware: audit-safe attributes on each tool call's span, and the call and denial metrics.

It adds to the server span FastMCP opens for the request (so one request is one span) the tool,
the outcome, the principal id, the argument shape, the SQL fingerprint when the tool reports one,
and for a denial the capability layer and the reason (an exception class name, never its message).
The span processor redacts and allow-lists again on export; this layer never offers more.
"""

from __future__ import annotations

import json
import time
from typing import Any

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import ToolResult
from opentelemetry import trace

from app.auth.principal import PrincipalProvider
from app.errors import CapabilityDenied
from app.middleware.audit import UNAUTHENTICATED, argument_shape
from app.telemetry.instruments import DENIED, ERROR, OK, Instruments
from app.middleware.dispatch import TypedMiddleware


UNDECLARED_TOOL = "undeclared"


class TelemetryMiddleware(TypedMiddleware):
    """Outermost layer: sees every call, including those refused for audit backpressure.

    Args:
        instruments: The metric instruments.
        principals: Resolves the caller's principal id.
        declared: The tool names the policy declares; any other name is recorded as `undeclared`.

    Example:
        >>> FastMCP("x", middleware=[TelemetryMiddleware(Instruments(), principals, frozenset(policy.tools)), gate, audit, ...])
    """

    def __init__(self, instruments: Instruments, principals: PrincipalProvider, declared: frozenset[str]) -> None:
        self._instruments = instruments
        self._principals = principals
        self._declared = declared

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        span = trace.get_current_span()  # the request's server span; inner layers may open others
        started = time.perf_counter()
        try:
            result = await call_next(context)
        except BaseException as exc:
            self._record(span, context.message, None, exc, time.perf_counter() - started)
            raise
        self._record(span, context.message, result, None, time.perf_counter() - started)
        return result

    def _principal(self) -> str:
        try:
            return self._principals().subject
        except CapabilityDenied:
            return UNAUTHENTICATED

    def _record(self, span: trace.Span, message: mt.CallToolRequestParams, result: ToolResult | None,
                error: BaseException | None, seconds: float) -> None:
        # The caller picks the name: only declared tools get their own span name and metric series.
        tool = message.name if message.name in self._declared else UNDECLARED_TOOL
        if isinstance(error, CapabilityDenied):
            outcome = DENIED
        elif error is not None or (result is not None and result.is_error):
            outcome = ERROR
        else:
            outcome = OK
        attributes: dict[str, Any] = {
            "mcp_tee.tool": tool, "mcp_tee.outcome": outcome, "mcp_tee.principal": self._principal(),
            "mcp_tee.args.shape": json.dumps(argument_shape(dict(message.arguments or {})), sort_keys=True),
        }
        structured = result.structured_content if result is not None else None
        if isinstance(structured, dict) and isinstance(structured.get("statement_fingerprint"), str):
            attributes["mcp_tee.sql.fingerprint"] = structured["statement_fingerprint"]
        if isinstance(error, CapabilityDenied):
            layer, reason = error.layer, type(error).__name__
            attributes |= {"mcp_tee.denial.layer": layer, "mcp_tee.denial.reason": reason}
            self._instruments.denied(tool, layer, reason)
        # A tool that lists tools while running (attestation_status's digest) makes FastMCP rename the
        # request span to `tools/list`; name it after the call again.
        span.update_name(f"tools/call {tool}")
        span.set_attributes(attributes)
        self._instruments.call_finished(tool, outcome, seconds)
