"""Delegation middleware: a call made with a capability token must also pass every check the token carries.

Threat model: a sub-agent holding a narrowed capability tries to reach further: another tool, a
table hidden in a CTE, more rows, another channel, a call after expiry or past its budget, or a
revoked token. This layer runs after the scope check (the normal capability policy still applies
in full) and before confirmation, quotas and breakers, so a refused call never prompts the user
and never holds an upstream slot. The facts it states come from the server: the tool's own
defaults fill in omitted arguments (an omitted ``max_rows`` is the row limit the tool will
really apply), and ``table`` facts come from the SQL parse tree. Calls by ordinary bearer
principals pass untouched. A capability never replaces confirmation: writes still ask the user
in the next layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mcp_types as mt
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.tools.base import Tool, ToolResult

from app.auth.principal import PrincipalProvider
from app.delegation.authorize import CallFacts, CapabilityGate
from app.delegation.errors import reject
from app.delegation.rights import NON_DELEGABLE_TOOLS
from app.errors import CapabilityDenied
from app.guards.sql_relations import relations_read
from app.middleware.dispatch import TypedMiddleware

# Tool arguments that become request facts, by argument name.
SQL_ARGUMENT = "sql"
MAX_ROWS_ARGUMENT = "max_rows"
CHANNEL_ARGUMENT = "channel"
FACT_ARGUMENTS = frozenset({SQL_ARGUMENT, MAX_ROWS_ARGUMENT, CHANNEL_ARGUMENT})


def call_facts(tool: str, arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> CallFacts:
    """The facts for one call: its arguments, with the tool's schema defaults for the omitted ones."""
    properties = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
    defaults = {name: spec["default"] for name, spec in properties.items()
                if name in FACT_ARGUMENTS and isinstance(spec, Mapping) and "default" in spec}
    values = {**defaults, **{name: value for name, value in arguments.items() if name in FACT_ARGUMENTS}}
    sql, max_rows, channel = values.get(SQL_ARGUMENT), values.get(MAX_ROWS_ARGUMENT), values.get(CHANNEL_ARGUMENT)
    if (MAX_ROWS_ARGUMENT in values and (isinstance(max_rows, bool) or not isinstance(max_rows, int))) or \
            any(name in values and not isinstance(values[name], str) for name in (SQL_ARGUMENT, CHANNEL_ARGUMENT)):
        # Fail closed: a fact we cannot state exactly is a refusal, not an omission.
        reject("the call's arguments cannot be checked against the capability")
    return CallFacts(tool=tool, tables=relations_read(sql) if sql is not None else frozenset(),
                     max_rows=max_rows, channel=channel)


class DelegationMiddleware(TypedMiddleware):
    """Enforces capability tokens on top of the capability policy.

    Args:
        gate: Authorizes calls and keeps revocations and budgets.
        principals: Resolves the caller; only principals carrying a delegation are checked.

    Example:
        >>> FastMCP("x", middleware=[audit, scopes, DelegationMiddleware(gate, principals), confirmation, ...])
    """

    def __init__(self, gate: CapabilityGate, principals: PrincipalProvider) -> None:
        self._gate = gate
        self._principals = principals

    async def on_list_tools(self, context: MiddlewareContext[mt.ListToolsRequest],
                            call_next: CallNext[mt.ListToolsRequest, Sequence[Tool]]) -> Sequence[Tool]:
        tools = await call_next(context)
        try:
            capability = self._principals().delegation
        except CapabilityDenied:
            return []  # Fail closed: an unverified caller sees nothing.
        if capability is None:
            return tools
        return [tool for tool in tools if tool.name in capability.rights and tool.name not in NON_DELEGABLE_TOOLS]

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams],
                           call_next: CallNext[mt.CallToolRequestParams, ToolResult]) -> ToolResult:
        capability = self._principals().delegation
        if capability is None:
            return await call_next(context)
        name = context.message.name
        if name in NON_DELEGABLE_TOOLS:
            reject(f"{name!r} cannot be called with a delegated capability")
        tool = await context.fastmcp_context.fastmcp.get_tool(name) if context.fastmcp_context else None
        if tool is None:
            # Fail closed: without the tool's schema we cannot state its defaults.
            reject("unknown tool or not permitted")
        self._gate.check(capability, call_facts(name, dict(context.message.arguments or {}), tool.parameters))
        return await call_next(context)
