"""Confirmation gate: a write runs only after the user explicitly accepts exactly what it will do.

Threat model: a prompt-injected model can call any tool it sees. For a write,
the model's intent is not enough; the *user* must see the exact effect and say
yes. The gate asks through MCP elicitation, which the client shows to the user,
not to the model. Decline, cancel, a client without elicitation, an error, a
timeout or anything but an explicit `true` means the write does not happen.
"Explicit" is checked on the raw answer, before any coercion: only `{"value": true}`, a JSON
boolean in the one field the schema asks for, is consent; `"yes"`, `"on"`, `1`, `1.0` or an
answer with extra fields is not (pydantic's lax mode would turn several of those into `True`).
On MCP 2026-07-28, which has no server-initiated requests, the same question
travels as an InputRequiredResult; the retried call must carry the SDK-sealed
state, whose argument digest must match, which names the principal who was asked
(the SDK binds it too, through the auth context), and which is honoured once only.
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

from fastmcp.tools.base import InputRequiredToolResult
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from app.auth.principal import PrincipalProvider
from app.confirmation import ConfirmationRefused, ConfirmedRequest, confirmed_request
from app.errors import InvalidArgument, deny
from app.middleware.dispatch import TypedMiddleware
from app.telemetry.instruments import layer_span

logger = logging.getLogger(__name__)

DEFAULT_CONFIRMATION_TIMEOUT_S = 120.0
Preview = Callable[[Mapping[str, Any]], str]
_REFUSALS = {"decline": "the user declined", "cancel": "the user cancelled"}
CANNOT_PROMPT = "this client cannot show confirmation prompts (it does not support MCP elicitation)"
_QUESTION_KEY = "mcp-tee-confirm"
_YES_NO_SCHEMA = {"type": "object", "properties": {"value": {"type": "boolean", "title": "Allow"}},
                  "required": ["value"]}
MAX_REMEMBERED_CONFIRMATIONS = 10_000
_CONSENT_FIELDS = frozenset(_YES_NO_SCHEMA["properties"])


def is_explicit_yes(content: Any) -> bool:
    """True only for the raw answer `{"value": true}`: a JSON boolean, in exactly the schema's field."""
    return isinstance(content, Mapping) and set(content) == _CONSENT_FIELDS and content["value"] is True


def _digest(arguments: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(arguments), sort_keys=True, default=str).encode()).hexdigest()


def _negotiated_round_trips(ctx) -> bool:
    """True on MCP 2026-07-28 connections, which ask through InputRequiredResult instead."""
    request = getattr(ctx, "request_context", None) if ctx is not None else None
    return request is not None and request.protocol_version in MODERN_PROTOCOL_VERSIONS


def _client_can_prompt(ctx) -> bool:
    """Whether the client declared elicitation; a client that did not may still answer "cancel" for its user."""
    try:
        capabilities = ctx.session.client_capabilities
    except (AttributeError, RuntimeError):
        return False  # Fail closed: no session to read capabilities from means no one to ask.
    return capabilities is not None and capabilities.elicitation is not None


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
        principals: Resolves the caller, whose subject the round-trip state must name.

    Example:
        mcp = FastMCP("x", middleware=[ConfirmationMiddleware({"send_notification"})])
    """

    def __init__(
        self,
        tools: set[str] | frozenset[str],
        *,
        previews: Mapping[str, Preview] | None = None,
        timeout_s: float = DEFAULT_CONFIRMATION_TIMEOUT_S,
        principals: PrincipalProvider | None = None,
    ) -> None:
        self._tools = frozenset(tools)
        self._principals = principals
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
        if ctx is not None and not _client_can_prompt(ctx):
            self._refuse(tool, CANNOT_PROMPT)
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
        state = json.dumps({"tool": tool, "arguments": _digest(arguments), "request_id": uuid.uuid4().hex,
                            "principal": self._subject()})
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
        if asked.get("principal") != self._subject():
            self._refuse(tool, "the confirmation was asked of another caller")
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
        if not is_explicit_yes(getattr(answer, "content", None)):
            self._refuse(tool, "the user answered no")
        return request_id

    async def _ask(self, ctx, tool: str, preview: str) -> None:
        if ctx is None:
            self._refuse(tool, "no MCP session to ask the user through")
        try:
            # The session's own elicit hands back the raw answer; `ctx.elicit(..., bool)` would coerce it.
            with layer_span("confirmation wait", {"mcp_tee.tool": tool}):
                answer = await asyncio.wait_for(
                    ctx.session.elicit(message=f"Allow {tool} to do exactly this?\n\n{preview}",
                                       requested_schema=_YES_NO_SCHEMA, related_request_id=ctx.request_id),
                    self._timeout_s,
                )
        except asyncio.TimeoutError:
            self._refuse(tool, f"no answer within {self._timeout_s:g} s")
        except InvalidArgument:
            raise
        except Exception as exc:  # an unsupported client surfaces as an error from elicit()
            logger.info("confirmation for %s could not be asked: %s", tool, type(exc).__name__)
            self._refuse(tool, CANNOT_PROMPT)
        if answer.action != "accept":
            self._refuse(tool, _REFUSALS.get(answer.action, "the user did not accept"))
        if not is_explicit_yes(answer.content):
            self._refuse(tool, "the user answered no")

    def _subject(self) -> str | None:
        return self._principals().subject if self._principals is not None else None

    @staticmethod
    def _refuse(tool: str, reason: str) -> NoReturn:
        deny(f"not done: {tool} needs explicit confirmation and {reason}", layer="confirmation",
             error=ConfirmationRefused)
