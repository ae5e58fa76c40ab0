"""Join the caller's trace: W3C `traceparent` from the HTTP request header, for the whole request.

MCP 2026-07-28 carries `traceparent` in a request's `_meta` (SEP-414), and FastMCP already extracts
it there. A client may instead (or also) send the standard HTTP header; this ASGI middleware
attaches that context while the request is handled, so the server's spans become children of the
client's span either way. When both are present the header wins, as FastMCP keeps a context that
is already valid. Only `traceparent` and `tracestate` are read: baggage is not propagated, since
it is free text a client controls and nothing here should copy into spans.
"""

from __future__ import annotations

from opentelemetry import context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_PROPAGATOR = TraceContextTextMapPropagator()


class TraceContextMiddleware:
    """ASGI middleware: run each HTTP request inside the trace context its headers name.

    Example:
        >>> app = TraceContextMiddleware(mcp.http_app(path="/mcp"))
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope.get("headers", ()) if name.lower() in TRACE_HEADERS}
        if not carrier:
            await self.app(scope, receive, send)
            return
        token = context.attach(_PROPAGATOR.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)
