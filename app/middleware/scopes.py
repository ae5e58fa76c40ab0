"""Default-deny tool visibility: only tools the policy declares, and only to callers with the scopes.

Threat model: a tool registered in code but missing from the policy (a debug helper, a tool added
by a dependency) must never be reachable, and a read-only token must never see or call a write
tool. `tools/list` is filtered, and `tools/call` is checked again, because a client can call a
tool it was never shown. Messages about undeclared tools stay vague so they disclose nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import Tool, ToolResult

from app.capability_policy import CapabilityPolicy
from app.auth.principal import Principal, PrincipalProvider
from app.errors import CapabilityDenied, deny
from app.middleware.dispatch import TypedMiddleware

UNDECLARED_MESSAGE = "unknown tool or not permitted"


def _reject(message: str) -> NoReturn:
    deny(message, layer="scopes")


def permitted(policy: CapabilityPolicy, principal: Principal, tool: str) -> bool:
    """True when `tool` is declared and `principal` holds every scope it requires."""
    tool_policy = policy.tool(tool)
    return tool_policy is not None and tool_policy.scopes <= principal.scopes


class ScopeMiddleware(TypedMiddleware):
    """Hides and refuses undeclared tools and tools the caller lacks scopes for.

    Args:
        policy: The capability policy.
        principals: Resolves the caller.
    """

    def __init__(self, policy: CapabilityPolicy, principals: PrincipalProvider) -> None:
        self._policy = policy
        self._principals = principals

    async def on_list_tools(self, context: MiddlewareContext[mt.ListToolsRequest],
                            call_next: CallNext[mt.ListToolsRequest, Sequence[Tool]]) -> Sequence[Tool]:
        tools = await call_next(context)
        try:
            principal = self._principals()
        except CapabilityDenied:
            # Fail closed: an unverified caller sees nothing.
            return []
        return [tool for tool in tools if permitted(self._policy, principal, tool.name)]

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        name = context.message.name
        principal = self._principals()
        tool_policy = self._policy.tool(name)
        if tool_policy is None:
            _reject(UNDECLARED_MESSAGE)
        missing = sorted(tool_policy.scopes - principal.scopes)
        if missing:
            _reject(f"insufficient scope for {name!r}: requires {' '.join(missing)}")
        return await call_next(context)
