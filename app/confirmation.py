"""The confirmed-request context: the confirmation layer sets it, a write tool requires it.

Threat model: a write must never run without the user's explicit yes. The confirmation layer
puts a `ConfirmedRequest` in a context variable for exactly the call the user accepted; the write
tool asks for it and is refused without one (defense in depth, should a layer ever be skipped).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from app.errors import CapabilityDenied, deny


class ConfirmationRefused(CapabilityDenied):
    """The user did not explicitly accept the write; nothing was done."""

    layer = "confirmation"


@dataclass(frozen=True)
class ConfirmedRequest:
    """Proof, inside one tool call, that the user accepted it."""

    request_id: str
    tool: str


confirmed_request: ContextVar[ConfirmedRequest | None] = ContextVar("mcp_tee_confirmed_request", default=None)


def current_confirmation(tool: str) -> ConfirmedRequest:
    """Return the confirmation of the running call of `tool`, or refuse."""
    confirmed = confirmed_request.get()
    if confirmed is None or confirmed.tool != tool:
        # Fail closed: a write reached without passing the gate is refused.
        deny(f"not done: {tool} requires the user's confirmation", layer="confirmation", error=ConfirmationRefused)
    return confirmed
