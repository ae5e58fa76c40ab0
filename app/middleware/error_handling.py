"""Error boundary: every failure of a tool call leaves as a short MCP tool error, never a traceback.

Threat model: exception text is where secrets leak (a URL with a token in it,
a driver error quoting a DSN). Our own `ToolError`s are written to be safe and
pass through. Argument-validation failures are re-worded from field names and
pydantic's messages only, never the offending input. Anything else is an
internal error: the caller gets a reference id, the log gets the exception
class and the same id, and neither gets the exception's text.

An error from a tool whose output is third-party data may quote that data (a
database value, an upstream's explanation): unless it is one of our own
denials or upstream failures, whose text we write, it leaves as an error result
that is marked untrusted, redacted and cut short (`untrusted_error_result`).
"""

from __future__ import annotations

import logging
import uuid

from fastmcp.exceptions import NotFoundError, ToolError, ValidationError
from pydantic import ValidationError as PydanticValidationError

from app.audit.redaction import Redactor
from app.errors import CapabilityDenied, InvalidArgument, UpstreamError
from app.middleware.dispatch import TypedMiddleware
from app.middleware.untrusted import untrusted_error_result

logger = logging.getLogger(__name__)

MAX_VALIDATION_ISSUES = 5
# Errors whose text this server writes itself, never quoting an upstream; they pass through as they are.
OWN_TEXT_ERRORS = (CapabilityDenied, UpstreamError)


class ErrorBoundaryMiddleware(TypedMiddleware):
    """Outermost layer: turns every exception from a tool call into a safe tool error.

    Args:
        untrusted_tools: Tools whose errors may quote third-party text.
        redactor: Scrubs secrets from those errors.

    Example:
        mcp = FastMCP("x", middleware=[ErrorBoundaryMiddleware(frozenset({"query_database"}), redactor), ...])
    """

    def __init__(self, untrusted_tools: frozenset[str] = frozenset(), redactor: Redactor | None = None) -> None:
        self._untrusted_tools = untrusted_tools
        self._redactor = redactor or Redactor()

    async def on_call_tool(self, context, call_next):
        try:
            return await call_next(context)
        except OWN_TEXT_ERRORS:
            raise
        except ToolError as exc:
            if context.message.name in self._untrusted_tools:
                return untrusted_error_result(exc, self._redactor)
            raise
        except ValidationError as exc:
            raise InvalidArgument(_describe_validation(exc)) from None
        except NotFoundError:
            raise ToolError("unknown tool") from None
        except Exception as exc:
            reference = uuid.uuid4().hex[:12]
            logger.error("tool %s failed: %s (ref %s)", context.message.name, type(exc).__name__, reference)
            raise ToolError(f"internal error (ref {reference}); the server logged the cause") from None


def _describe_validation(exc: ValidationError) -> str:
    cause = exc.__cause__
    if not isinstance(cause, PydanticValidationError):
        return "invalid arguments"
    issues = []
    for detail in cause.errors(include_url=False, include_context=False, include_input=False):
        field = ".".join(str(part) for part in detail["loc"] if part != "call") or "arguments"
        issues.append(f"{field}: {detail['msg']}")
    more = "" if len(issues) <= MAX_VALIDATION_ISSUES else f" (+{len(issues) - MAX_VALIDATION_ISSUES} more)"
    return "invalid arguments: " + "; ".join(issues[:MAX_VALIDATION_ISSUES]) + more
