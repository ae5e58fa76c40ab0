"""`mint_capability` and `revoke_capability`: exchange your bearer for a delegable capability, or revoke one.

Thin tools over `app.delegation.service`: the service decides what may be minted and revoked. The
minted token goes back to the caller only; the audit records its revocation id, rights and expiry.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping

from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult
from mcp_types import ToolAnnotations
from pydantic import Field

from app.delegation.rights import MAX_CAPABILITY_TTL_S
from app.tools.spec import AuditSummary, ToolSpec
from app.tools.server_state import ServerState

REVOCATION_ID_PATTERN = r"^[0-9a-f]{16,256}$"


def register_mint(mcp: FastMCP, state: ServerState) -> None:
    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False,
                                          openWorldHint=False))
    async def mint_capability(
        tools: Annotated[list[Annotated[str, Field(max_length=128)]] | None,
                         Field(max_length=64, description="Only these tools (default: every tool you may delegate)")] = None,
        ttl_s: Annotated[int, Field(ge=1, le=MAX_CAPABILITY_TTL_S, description="Lifetime; never past your bearer token's")] = 3600,
    ) -> dict:
        """Mint a capability token for your own rights, to narrow offline and hand to a sub-agent."""
        return state.delegation.mint(state.principals(), tools=tools, ttl_s=ttl_s)


def register_revoke(mcp: FastMCP, state: ServerState) -> None:
    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True,
                                          openWorldHint=False))
    async def revoke_capability(
        revocation_id: Annotated[str, Field(pattern=REVOCATION_ID_PATTERN, description="From mint_capability")],
    ) -> dict:
        """Revoke a capability you minted; every token narrowed from it is refused from now on."""
        return state.delegation.revoke(state.principals(), revocation_id)


def mint_summary(args: Mapping[str, Any], result: ToolResult | None) -> dict[str, Any]:
    """The mint as the audit records it: never the token, only what identifies and bounds it."""
    structured = result.structured_content if result is not None else None
    structured = structured if isinstance(structured, dict) else {}
    return {key: structured.get(key) for key in ("revocation_id", "rights", "expires_at", "capability_root_source")}


MINT_SPEC = ToolSpec(name="mint_capability", register=register_mint,
                     audit_summary=AuditSummary(omit=frozenset(), summarize=mint_summary))
REVOKE_SPEC = ToolSpec(name="revoke_capability", register=register_revoke)
