"""Confirmation gate: a write runs only after the user explicitly accepts exactly what it will do.

Threat model: a prompt-injected model can call any tool it sees. For a write,
the model's intent is not enough; the *user* must see the exact effect and say
yes. The gate asks through MCP elicitation, which the client shows to the user,
not to the model. Decline, cancel, a client without elicitation, an error, a
timeout or anything but an explicit `true` means the write does not happen.
On MCP 2026-07-28, which has no server-initiated requests, the same question
travels as an InputRequiredResult; the retried call must carry the SDK-sealed
state, whose argument digest must match and which is honoured once only.
Each accepted request gets a fresh id that the write uses as its idempotency
key. The write tool also checks that it runs under a confirmation (defense
in depth).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections import OrderedDict
from typing import Any, Callable, Mapping, NoReturn

from fastmcp.server.elicitation import AcceptedElicitation
from fastmcp.tools.base import InputRequiredToolResult
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from app.confirmation import ConfirmationRefused, ConfirmedRequest, confirmed_request
from app.errors import InvalidArgument, deny
from app.middleware.dispatch import TypedMiddleware

logger = logging.getLogger(__name__)

DEFAULT_CONFIRMATION_TIMEOUT_S = 120.0
Preview = Callable[[Mapping[str, Any]], str]
_REFUSALS = {"decline": "the user declined", "cancel": "the user cancelled"}
_QUESTION_KEY = "mcp-tee-confirm"
_YES_NO_SCHEMA = {"type": "object", "properties": {"value": {"type": "boolean", "title": "Allow"}},
                  "required": ["value"]}
MAX_REMEMBERED_CONFIRMATIONS = 10_000


def _digest(arguments: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(arguments), sort_keys=True, default=str).encode()).hexdigest()


def _negotiated_round_trips(ctx) -> bool:
    """True on MCP 2026-07-28 connections, which ask through InputRequiredResult instead."""
    request = getattr(ctx, "request_context", None) if ctx is not None else None
    return request is not None and request.protocol_version in MODERN_PROTOCOL_VERSIONS


def _generic_preview(arguments: Mapping[str, Any]) -> str:
    return json.dumps(dict(arguments), indent=2, sort_keys=True, default=str)


class ConfirmationMiddleware(TypedMiddleware):
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
        self._answered: OrderedDict[str, None] = OrderedDict()  # single-use round-trip confirmations

    async def on_call_tool(self, context, call_next):
        tool = context.message.name
        if tool not in self._tools:
            return await call_next(context)
        arguments = context.message.arguments or {}
        preview = self._previews.get(tool, _generic_preview)(arguments)
        ctx = context.fastmcp_context
        if _negotiated_round_trips(ctx):
            request_id = self._round_trip_answer(ctx, tool, arguments)
            if request_id is None:
                return self._round_trip_question(tool, arguments, preview)
        else:
            await self._ask(ctx, tool, preview)
            request_id = uuid.uuid4().hex
        token = confirmed_request.set(ConfirmedRequest(request_id=request_id, tool=tool))
        try:
            return await call_next(context)
        finally:
            confirmed_request.reset(token)

    # MCP 2026-07-28 has no server-initiated requests: the call returns the question as an
    # InputRequiredResult and the client retries it with the answer. The request state is
    # sealed by the SDK, carries a digest of the arguments the user saw, and is single-use.

    def _round_trip_question(self, tool: str, arguments: Mapping[str, Any], preview: str) -> InputRequiredToolResult:
        state = json.dumps({"tool": tool, "arguments": _digest(arguments), "request_id": uuid.uuid4().hex})
        question = ElicitRequest(params=ElicitRequestFormParams(
            message=f"Allow {tool} to do exactly this?\n\n{preview}", requested_schema=_YES_NO_SCHEMA))
        return InputRequiredToolResult(InputRequiredResult(input_requests={_QUESTION_KEY: question},
                                                           request_state=state))

    def _round_trip_answer(self, ctx, tool: str, arguments: Mapping[str, Any]) -> str | None:
        """The confirmed request id, None when the question has not been asked yet; refuses otherwise."""
        responses, state = ctx.input_responses, ctx.request_state
        if responses is None or state is None:
            return None
        try:
            asked = json.loads(state)
            request_id = str(asked["request_id"])
        except (ValueError, KeyError, TypeError):
            self._refuse(tool, "the confirmation state is not ours")
        if asked.get("tool") != tool or asked.get("arguments") != _digest(arguments):
            self._refuse(tool, "the arguments changed after the user saw them")
        if request_id in self._answered:
            self._refuse(tool, "this confirmation was already used")
        self._answered[request_id] = None
        while len(self._answered) > MAX_REMEMBERED_CONFIRMATIONS:
            self._answered.popitem(last=False)
        answer = responses.get(_QUESTION_KEY)
        action = getattr(answer, "action", None)
        if action != "accept":
            self._refuse(tool, _REFUSALS.get(action, "the user did not accept"))
        if (getattr(answer, "content", None) or {}).get("value") is not True:
            self._refuse(tool, "the user answered no")
        return request_id

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
    def _refuse(tool: str, reason: str) -> NoReturn:
        deny(f"not done: {tool} needs explicit confirmation and {reason}", layer="confirmation",
             error=ConfirmationRefused)
