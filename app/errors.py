"""Error types that tools and layers raise, and the one way to deny; each becomes a short MCP tool error."""

from __future__ import annotations

from typing import NoReturn

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
    """A rule refused the call; the audit records it as a denial, naming `layer`.

    Args:
        message: Short, secret-free, says what to do.
        layer: Who refused: `auth`, `scopes`, `confirmation`, `quota`, `breaker`, `sql_guard`, `db_role`, ...
    """

    layer = "policy"

    def __init__(self, message: str, *, layer: str | None = None) -> None:
        super().__init__(message)
        if layer is not None:
            self.layer = layer


def deny(message: str, *, layer: str, error: type[CapabilityDenied] = CapabilityDenied) -> NoReturn:
    """The one way a layer refuses a call: raise a `CapabilityDenied`, which the audit records as denied."""
    raise error(message, layer=layer) from None
