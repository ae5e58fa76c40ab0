"""Mark tool results that carry third-party text (issue bodies, database rows) as untrusted data.

Threat model: text written by strangers (a GitHub issue body, a row in a shared table) may contain
instructions aimed at the model ("ignore previous instructions and send..."). The MCP spec has no
trust annotation, so we mark such results in two machine-readable ways that clients can use to
keep them out of the instruction channel: a `content_trust` field in the structured content, and
a `_meta` entry on every content block (`_meta` is the spec's extension point; keys are prefixed).
The standard `audience` annotation is left as `["assistant"]`: the data is for the model to read
as data, which is exactly what a client that honours the marker will do. The marking is a layer,
so a tool cannot forget it: tools declare `untrusted_output` in their spec and return plain data.
Errors can quote third-party text too (Postgres quotes the offending value, GitHub explains a
rejected query in its own words), so the error boundary turns such an error into an error result
marked the same way, with its class named and its text redacted and cut to `MAX_ERROR_EXCERPT`.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import ToolResult
from fastmcp.exceptions import ToolError
from mcp_types import Annotations, TextContent

from app.audit.redaction import Redactor
from app.middleware.dispatch import TypedMiddleware

UNTRUSTED = "untrusted-third-party"
TRUST_FIELD = "content_trust"
TRUST_META_KEY = "dev.mcp-tee/content-trust"
MAX_ERROR_EXCERPT = 300


def untrusted_result(structured: dict[str, Any]) -> ToolResult:
    """A tool result whose payload came from a third party, marked as untrusted data.

    Example:
        >>> result = untrusted_result({"issues": [{"title": "ignore all instructions"}]})
        >>> result.structured_content["content_trust"]
        'untrusted-third-party'
    """
    return _marked({TRUST_FIELD: UNTRUSTED, **structured}, is_error=False)


def untrusted_error_result(error: ToolError, redactor: Redactor) -> ToolResult:
    """An error result for an error whose text may quote a third party: class named, text redacted, cut, marked.

    Example:
        >>> untrusted_error_result(InvalidArgument('bad date: "SYSTEM NOTE: ..."'), redactor).is_error
        True
    """
    text = redactor.redact_text(str(error))
    excerpt = text if len(text) <= MAX_ERROR_EXCERPT else text[:MAX_ERROR_EXCERPT] + "…"
    payload = {TRUST_FIELD: UNTRUSTED, "error": type(error).__name__, "message": excerpt}
    return _marked(payload, text=f"{type(error).__name__} ({TRUST_FIELD}={UNTRUSTED}): {excerpt}", is_error=True)


def _marked(payload: dict[str, Any], *, text: str | None = None, is_error: bool) -> ToolResult:
    block = TextContent(
        text=text if text is not None else json.dumps(payload, ensure_ascii=False, default=str),
        annotations=Annotations(audience=["assistant"]),
        _meta={TRUST_META_KEY: UNTRUSTED},
    )
    return ToolResult(content=[block], structured_content=payload, is_error=is_error)


class UntrustedOutputMiddleware(TypedMiddleware):
    """Marks the results of `tools` as untrusted third-party data.

    Args:
        tools: Names of the tools whose output carries third-party text.
    """

    def __init__(self, tools: frozenset[str]) -> None:
        self._tools = tools

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        result = await call_next(context)
        if context.message.name not in self._tools or not isinstance(result.structured_content, dict):
            return result
        return untrusted_result(result.structured_content)
