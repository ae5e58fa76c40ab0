"""`provide_session_credentials`: a user's scoped tokens, sealed to this session's attested key (layer 2).

Threat model: a user token must be readable only by the attested code, and only
for the MCP session that asked for it. So the tool accepts nothing but an HPKE
blob sealed to this session's X25519 key (whose public half an attestation
token bound); a plaintext token is refused before anything else looks at it,
and a blob sealed for another session does not open (the HPKE ``info`` binds
the session key). Accepted values live in memory only, carry a TTL (default
15 minutes, capped at an hour), are added to the redactor before they are
stored, and are reported back as kind and expiry, never as values. Refusals
say what to do without echoing the input: every one goes through ``_reject``.

The sealed plaintext's format is `app.wire.credentials`.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Mapping, NoReturn

from fastmcp import Context, FastMCP
from fastmcp.tools.base import ToolResult
from mcp_types import ToolAnnotations
from pydantic import Field

from app.errors import InvalidArgument
from app.tools.caller_state import caller_state_key
from app.tools.spec import AuditSummary, ToolSpec
from app.tools.server_state import ServerState
from app.wire.credentials import CredentialPayload, parse_credential_payload
from app.wire.session_seal import SessionSealError
from app.wire.tls_binding import CHANNEL_META_KEY

logger = logging.getLogger(__name__)

# X25519 encapsulated key (32 bytes) + AES-GCM tag (16 bytes) = 48 bytes = 64 base64url characters.
MIN_SEALED_CHARS = 64
MAX_SEALED_CHARS = 8 * 1024
SEALED_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
# Shapes of a credential sent as itself instead of sealed: refused with a pointer to the agent.
PLAINTEXT_SHAPES: tuple[re.Pattern[str], ...] = (
    re.compile(r"gh[pousr]_|github_pat_"),
    re.compile(r"\s*[{\[]"),
    re.compile(r"(?i)\s*(bearer|token)\s"),
)
PLAINTEXT_REFUSAL = ("plaintext credentials are refused: seal them to this session's attested key "
                     "(mcp-tee agent URL --github-token-stdin, or AttestedSession.provide_credentials)")


def _reject(reason: str) -> NoReturn:
    """The one place this tool denies: log the (secret-free) reason and raise."""
    logger.warning("session credentials refused: %s", reason)
    raise InvalidArgument(f"session credentials refused: {reason}")


def _open(state: ServerState, session_id: str | None, sealed: str) -> CredentialPayload:
    # Plaintext first: the clearest answer for the most dangerous mistake.
    if any(shape.match(sealed) for shape in PLAINTEXT_SHAPES):
        _reject(PLAINTEXT_REFUSAL)
    if not MIN_SEALED_CHARS <= len(sealed) <= MAX_SEALED_CHARS or not SEALED_ALPHABET.fullmatch(sealed):
        _reject(f"expected an HPKE blob sealed to this session's key (base64url, "
                f"{MIN_SEALED_CHARS}..{MAX_SEALED_CHARS} characters)")
    if session_id is None:  # Fail closed.
        _reject(f"no attested channel: call attestation_status with a nonce, verify it, and name the returned "
                f"channel in _meta[{CHANNEL_META_KEY!r}]")
    session = state.sessions.get(session_id)
    if not session.attested:
        _reject("this session has no attestation yet: call attestation_status with a nonce and verify it first")
    try:
        plaintext = session.key.open(sealed)
    except SessionSealError:
        _reject("the blob does not open with this session's key (sealed for another session, or not sealed)")
    try:
        return parse_credential_payload(plaintext)
    except ValueError as exc:
        _reject(str(exc))


def register(mcp: FastMCP, state: ServerState) -> None:
    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True,
                                          openWorldHint=False))
    async def provide_session_credentials(
        ctx: Context,
        sealed: Annotated[str, Field(description="HPKE blob sealed to this session's attested session_pub "
                                                 "(base64url); plaintext tokens are refused")],
    ) -> dict:
        """Hand this session your own scoped credentials, sealed to the attested session key; returns kind and expiry."""
        session_id = caller_state_key(ctx, state.principals().subject)
        payload = _open(state, session_id, sealed)
        # Redact before storing: from here on the value may travel through logs of upstream errors.
        state.redactor.add_secret(payload.token)
        state.sessions.add_credential(session_id, payload.kind, payload.token, payload.ttl_s)
        logger.info("session credentials of kind %s provided (ttl %d s)", payload.kind, payload.ttl_s)
        return {"kind": payload.kind, "ttl_s": payload.ttl_s,
                "session_credentials": state.sessions.active_credentials(session_id)}


def audit_summary(args: Mapping[str, Any], result: ToolResult | None) -> dict[str, Any]:
    """The credential's kind only; the sealed blob is never recorded."""
    structured = result.structured_content if result is not None else None
    return {"kind": structured.get("kind") if isinstance(structured, dict) else None}


SPEC = ToolSpec(
    name="provide_session_credentials",
    register=register,
    tee_only=True,  # layer-2 credentials need an attested session key
    audit_summary=AuditSummary(omit=frozenset({"sealed"}), summarize=audit_summary),
)
