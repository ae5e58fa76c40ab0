"""`attestation_status`: what this server is, which capabilities it has, and the evidence for where it runs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import Field

from app import SERVER_NAME, __version__
from app.tools.caller_state import caller_state_key, is_sessionless, named_channel, new_channel_handle
from app.tools.spec import ToolSpec
from app.tools.server_state import ServerState
from app.wire.runtime_data import tools_digest

NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
# The audit head reported is at most this old: a fresh signed checkpoint per call would cost every
# call a signature and a log line, and an auditor polls heads far less often than this.
AUDIT_HEAD_MAX_AGE_S = 1.0


def register(mcp: FastMCP, state: ServerState) -> None:
    # The visible tool set depends only on the caller's scopes and, for a delegate, its capability's
    # rights (the policy and the disabled tools are fixed at start-up), so its digest is computed once
    # per (scopes, rights), not on every call.
    digests: dict[tuple[frozenset[str], frozenset[str] | None], str] = {}

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=False, openWorldHint=False))
    async def attestation_status(
        ctx: Context,
        nonce: Annotated[
            str | None,
            Field(pattern=NONCE_PATTERN, description="Fresh random nonce (16-128 base64url chars) to bind the evidence to"),
        ] = None,
    ) -> dict:
        """Report where this server runs, with fresh attestation evidence bound to your nonce in TEE mode."""
        principal = state.principals()
        seen_by = (principal.scopes,
                   frozenset(principal.delegation.rights) if principal.delegation is not None else None)
        digest = digests.get(seen_by)
        if digest is None:
            # The tools this caller sees (filtered by scope and rights), so an agent can detect a changed set.
            visible = [tool.to_mcp_tool() for tool in await ctx.fastmcp.list_tools()]
            digest = digests[seen_by] = tools_digest(visible)
        # 2026-07-28 has no session: a nonce without a named channel mints one (TEE mode), see caller_state.
        minted = new_channel_handle() if (nonce and state.settings.tee_mode and is_sessionless(ctx)
                                          and named_channel(ctx) is None) else None
        owned = caller_state_key(ctx, principal.subject, minted)
        evidence = await state.attestation.evidence(nonce=nonce, session_id=owned, tools_digest=digest)
        report = {
            "server": SERVER_NAME,
            "version": __version__,
            **evidence,
            "secrets_loaded": state.secrets.loaded(),
            "secrets_source": state.secrets.source,
            "disabled_capabilities": dict(state.disabled),
            "tools_digest": digest,
            "session_credentials": state.sessions.active_credentials(owned) if owned else [],
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if owned and is_sessionless(ctx):
            report["channel"] = minted or named_channel(ctx)
        for extra in state.status_extras:
            report.update(extra())
        if state.audit_head is not None:
            head = await state.audit_head(AUDIT_HEAD_MAX_AGE_S)
            # Keep this outside the host: `audit verify --expect-head SEQ:SHA256` then detects a cut-back log.
            report["audit_head"] = {**head, "expect_head": f"{head['seq']}:{head['sha256']}"}
        return report


SPEC = ToolSpec(name="attestation_status", register=register)
