"""Confirmation gate: a write runs only after the user explicitly accepts exactly what it will do.

Threat model: a prompt-injected model can call any tool it sees. For a write,
the model's intent is not enough; the *user* must see the exact effect and say
yes. The gate asks through MCP elicitation, which the client shows to the user,
not to the model. Decline, cancel, a client without elicitation, an error, a
timeout or anything but an explicit `true` means the write does not happen.
Each accepted request gets a fresh id that the write uses as its idempotency
key, so a retry of the same confirmed request cannot post twice. The write
tool also checks that it runs under a confirmation (defense in depth).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from fastmcp.server.elicitation import AcceptedElicitation
from fastmcp.server.middleware import Middleware

from app.errors import CapabilityDenied, InvalidArgument

logger = logging.getLogger(__name__)

DEFAULT_CONFIRMATION_TIMEOUT_S = 120.0
Preview = Callable[[Mapping[str, Any]], str]
_REFUSALS = {"decline": "the user declined", "cancel": "the user cancelled"}


class ConfirmationRefused(CapabilityDenied):
    """The user did not explicitly accept the write; nothing was done."""


@dataclass(frozen=True)
class ConfirmedRequest:
    """Proof, inside one tool call, that the user accepted it."""

    request_id: str
    tool: str


_current: ContextVar[ConfirmedRequest | None] = ContextVar("mcp_tee_confirmed_request", default=None)


def current_confirmation(tool: str) -> ConfirmedRequest:
    """Return the confirmation of the running call of `tool`, or refuse."""
    confirmed = _current.get()
    if confirmed is None or confirmed.tool != tool:
        # Fail closed: a write reached without passing the gate is refused.
        raise ConfirmationRefused(f"not done: {tool} requires the user's confirmation")
    return confirmed


def _generic_preview(arguments: Mapping[str, Any]) -> str:
    return json.dumps(dict(arguments), indent=2, sort_keys=True, default=str)


class ConfirmationMiddleware(Middleware):
    """Asks the user to confirm calls of the listed tools before they run.

    Args:
        tools: Names of tools that need confirmation.
        previews: Optional per-tool renderers that validate the arguments and
            return exactly what will be done; invalid input is refused before
            the user is asked.
        timeout_s: How long to wait for the user's answer.

    Example:
        mcp = FastMCP("x", middleware=[ConfirmationMiddleware({"send_notification"})])
    """

    def __init__(
        self,
        tools: set[str] | frozenset[str],
        *,
        previews: Mapping[str, Preview] | None = None,
        timeout_s: float = DEFAULT_CONFIRMATION_TIMEOUT_S,
    ) -> None:
        self._tools = frozenset(tools)
        self._previews = dict(previews or {})
        self._timeout_s = timeout_s

    async def on_call_tool(self, context, call_next):
        tool = context.message.name
        if tool not in self._tools:
            return await call_next(context)
        arguments = context.message.arguments or {}
        preview = self._previews.get(tool, _generic_preview)(arguments)
        await self._ask(context.fastmcp_context, tool, preview)
        token = _current.set(ConfirmedRequest(request_id=uuid.uuid4().hex, tool=tool))
        try:
            return await call_next(context)
        finally:
            _current.reset(token)

    async def _ask(self, ctx, tool: str, preview: str) -> None:
        if ctx is None:
            self._refuse(tool, "no MCP session to ask the user through")
        try:
            answer = await asyncio.wait_for(
                ctx.elicit(f"Allow {tool} to do exactly this?\n\n{preview}", bool), self._timeout_s
            )
        except asyncio.TimeoutError:
            self._refuse(tool, f"no answer within {self._timeout_s:g} s")
        except InvalidArgument:
            raise
        except Exception as exc:  # an unsupported client surfaces as an error from elicit()
            logger.info("confirmation for %s could not be asked: %s", tool, type(exc).__name__)
            self._refuse(tool, "this client does not support confirmation prompts (MCP elicitation)")
        if not isinstance(answer, AcceptedElicitation):
            self._refuse(tool, _REFUSALS.get(getattr(answer, "action", None), "the user did not accept"))
        if answer.data is not True:
            self._refuse(tool, "the user answered no")

    @staticmethod
    def _refuse(tool: str, reason: str) -> None:
        raise ConfirmationRefused(f"not done: {tool} needs explicit confirmation and {reason}")
