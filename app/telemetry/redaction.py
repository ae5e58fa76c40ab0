"""Enforce redaction on the telemetry path: an attribute allow-list and the log redactor, applied to every span.

Threat model: spans and metrics leave the TEE for a collector the operator runs, so they may carry
only what the audit may carry: tool, outcome, principal id, SQL fingerprint (never the text),
argument shapes, denial layer and reason, upstream. Libraries (FastMCP, the MCP SDK) add attributes
of their own, and exception events carry messages and stack traces; hoping none of them holds a
secret is not enough. So `RedactingSpanProcessor` rebuilds each finished span before any exporter
sees it: attributes not on `ALLOWED_ATTRIBUTES` are dropped (on the span, its events and links),
and every remaining string, the span name and the status description pass through the same
`Redactor` as the logs. Metrics get the same allow-list through an SDK view (see `setup`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Link, Status

from app.audit.redaction import Redactor

# Our own attributes: what the audit records, never argument values or SQL text.
APP_ATTRIBUTES = frozenset({
    "mcp_tee.tool", "mcp_tee.outcome", "mcp_tee.principal", "mcp_tee.sql.fingerprint", "mcp_tee.args.shape",
    "mcp_tee.denial.layer", "mcp_tee.denial.reason", "mcp_tee.upstream", "mcp_tee.breaker.state",
    "mcp_tee.pool.state",
})
# Attributes that FastMCP, the MCP SDK and the OTel conventions set and that name only a method,
# a tool, a protocol version or an error class. Deliberately absent: `mcp.session.id` (a session
# handle), `enduser.scope`, `exception.message` and `exception.stacktrace` (free text).
LIBRARY_ATTRIBUTES = frozenset({
    "mcp.method.name", "mcp.protocol.version", "fastmcp.component.type", "fastmcp.component.key",
    "fastmcp.server.name", "fastmcp.provider.type", "gen_ai.tool.name", "gen_ai.operation.name",
    "error.type", "rpc.response.status_code", "exception.type", "db.system.name", "db.operation.name",
    "http.request.method", "http.response.status_code",
})
ALLOWED_ATTRIBUTES = APP_ATTRIBUTES | LIBRARY_ATTRIBUTES


def allowed_attributes(attributes: Mapping[str, Any] | None, redactor: Redactor) -> dict[str, Any]:
    """Only allow-listed keys, with every string value redacted."""
    kept: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key not in ALLOWED_ATTRIBUTES:
            continue
        if isinstance(value, str):
            value = redactor.redact_text(value)
        elif isinstance(value, (list, tuple)):
            value = tuple(redactor.redact_text(item) if isinstance(item, str) else item for item in value)
        kept[key] = value
    return kept


def redacted_span(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    """A copy of `span` that holds only allow-listed, redacted data."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redactor.redact_text(status.description))
    return ReadableSpan(
        name=redactor.redact_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=allowed_attributes(span.attributes, redactor),
        events=[Event(event.name, allowed_attributes(event.attributes, redactor), event.timestamp)
                for event in span.events],
        links=[Link(link.context, allowed_attributes(link.attributes, redactor)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanProcessor(SpanProcessor):
    """Hands the inner processor (batching, export) only redacted copies of finished spans.

    Args:
        inner: The processor that exports, e.g. `BatchSpanProcessor(OTLPSpanExporter())`.
        redactor: The same redactor the logs and the audit use.

    Example:
        >>> provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(exporter), redactor))
    """

    def __init__(self, inner: SpanProcessor, redactor: Redactor) -> None:
        self._inner = inner
        self._redactor = redactor

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(redacted_span(span, self._redactor))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
