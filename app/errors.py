"""Error types that tools raise; every one becomes a short MCP tool error, never a traceback."""

from __future__ import annotations

from fastmcp.exceptions import ToolError


class InvalidArgument(ToolError):
    """The caller sent an argument the tool will not accept; retrying unchanged will fail again."""


class UpstreamError(ToolError):
    """An upstream (GitHub, Postgres, webhook) failed or timed out; circuit breakers count these.

    Args:
        upstream: The upstream's name as declared in the capability policy.
        message: A short, secret-free description for the caller.
    """

    def __init__(self, upstream: str, message: str) -> None:
        super().__init__(message)
        self.upstream = upstream


class CapabilityDenied(ToolError):
    """A capability rule (scope, quota, confirmation, breaker) refused the call."""
