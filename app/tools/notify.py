"""`send_notification`: a write. It runs only under a confirmation the user accepted (see confirm.py)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Mapping

from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult
from mcp_types import ToolAnnotations
from pydantic import Field

from app.confirmation import current_confirmation
from app.errors import InvalidArgument
from app.guards.display_text import require_displayable
from app.secrets import WEBHOOK_URL
from app.tools.spec import AuditSummary, ToolSpec
from app.tools.server_state import ServerState

TOOL_NAME = "send_notification"
MAX_MESSAGE_CHARS = 2000
URGENCIES = frozenset({"low", "normal", "high", "critical"})
CHANNEL_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,79}$"
_CHANNEL = re.compile(CHANNEL_PATTERN)
Urgency = Literal["low", "normal", "high", "critical"]


def build_payload(arguments: Mapping[str, Any]) -> dict[str, str]:
    """Validate the arguments and return exactly the JSON the webhook will receive."""
    message = arguments.get("message")
    channel = arguments.get("channel", "general")
    urgency = arguments.get("urgency", "normal")
    if not isinstance(message, str) or not message.strip():
        raise InvalidArgument("message must be a non-empty string")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidArgument(f"message is {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}")
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        raise InvalidArgument("channel must be 1-80 characters of a-z, 0-9, '.', '_' or '-'")
    if not isinstance(urgency, str) or urgency not in URGENCIES:
        raise InvalidArgument(f"urgency must be one of {', '.join(sorted(URGENCIES))}")
    # Every user-visible field; channel and urgency are narrower already, so for them this is depth.
    for field, value in (("message", message), ("channel", channel), ("urgency", urgency)):
        require_displayable(field, value)
    return {"channel": channel, "urgency": urgency, "text": f"[{urgency}] {message}"}


def preview(arguments: Mapping[str, Any]) -> str:
    payload = build_payload(arguments)
    return f"Post to channel #{payload['channel']} (urgency {payload['urgency']}):\n{payload['text']}"


def register(mcp: FastMCP, state: ServerState) -> None:
    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False))
    async def send_notification(
        message: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)],
        channel: Annotated[str, Field(pattern=CHANNEL_PATTERN)] = "general",
        urgency: Urgency = "normal",
    ) -> dict:
        """Post a notification to the team webhook. The user is asked to confirm the exact message first."""
        confirmed = current_confirmation(TOOL_NAME)
        payload = build_payload({"message": message, "channel": channel, "urgency": urgency})
        status = await state.webhook.post(payload, idempotency_key=confirmed.request_id)
        return {"sent": True, "channel": channel, "urgency": urgency, "delivery_status": status,
                "idempotency_key": confirmed.request_id}


def audit_summary(args: Mapping[str, Any], result: ToolResult | None) -> dict[str, Any]:
    """The message's length and channel; never its text."""
    message = args.get("message")
    return {"message_length": len(message) if isinstance(message, str) else None,
            "channel": args.get("channel", "general")}


SPEC = ToolSpec(
    name=TOOL_NAME,
    register=register,
    requires_secret=WEBHOOK_URL,
    confirmation_preview=preview,
    audit_summary=AuditSummary(omit=frozenset({"message"}), summarize=audit_summary),
)
