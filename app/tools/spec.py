"""What one tool declares to the rest of the server, in one place: adding a tool touches one module.

The server registers tools from their specs (default-deny on `requires_secret`), the confirmation
layer takes `confirmation_preview`, the audit layer takes `audit_summary`, and the untrusted-output
layer marks the results of tools with `untrusted_output`. No layer imports a tool module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult

from app.tools.server_state import ServerState

Registrar = Callable[[FastMCP, ServerState], None]
Summarizer = Callable[[Mapping[str, Any], "ToolResult | None"], dict[str, Any]]


@dataclass(frozen=True)
class AuditSummary:
    """How the audit records a tool whose arguments are data rather than intent.

    Args:
        omit: Argument names never recorded, not even redacted.
        summarize: Builds the record's `summary` from the arguments and the result.
    """

    omit: frozenset[str]
    summarize: Summarizer


@dataclass(frozen=True)
class ToolSpec:
    """One tool's declaration.

    Args:
        name: The MCP tool name (also its key in the capability policy).
        register: Adds the tool to a FastMCP server, closing over the shared `ServerState`.
        requires_secret: The baseline secret without which the tool is not registered at all.
        tee_only: Registered only in TEE mode (it needs an attested session key).
        untrusted_output: Its results carry third-party text and are marked as untrusted data.
        confirmation_preview: Renders exactly what a confirmed call will do, for the user's prompt.
        audit_summary: Replaces data-like arguments in the audit record.
    """

    name: str
    register: Registrar
    requires_secret: str | None = None
    tee_only: bool = False
    untrusted_output: bool = False
    confirmation_preview: Callable[[Mapping[str, Any]], str] | None = None
    audit_summary: AuditSummary | None = None
