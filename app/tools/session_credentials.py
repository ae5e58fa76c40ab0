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

Sealed plaintext (canonical JSON, UTF-8)::

    {"kind": "github_token", "token": "<the user's token>", "ttl_s": 900}

``kind`` must be one of :data:`ALLOWED_CREDENTIAL_KINDS`; ``ttl_s`` is optional
(default 900) and capped at 3600.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import Field

from app.attestation.runtime_data import canonical_json
from app.attestation.session import SessionSealError
from app.errors import InvalidArgument
from app.sessions import DEFAULT_CREDENTIAL_TTL_S, MAX_CREDENTIAL_TTL_S, owned_session_id
from app.state import ServerState

logger = logging.getLogger(__name__)

ALLOWED_CREDENTIAL_KINDS = frozenset({"github_token"})
PAYLOAD_FIELDS = frozenset({"kind", "token", "ttl_s"})
# X25519 encapsulated key (32 bytes) + AES-GCM tag (16 bytes) = 48 bytes = 64 base64url characters.
MIN_SEALED_CHARS = 64
MAX_SEALED_CHARS = 8 * 1024
MAX_TOKEN_CHARS = 4096
SEALED_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
# Shapes of a credential sent as itself instead of sealed: refused with a pointer to the agent.
PLAINTEXT_SHAPES: tuple[re.Pattern[str], ...] = (
    re.compile(r"gh[pousr]_|github_pat_"),
    re.compile(r"\s*[{\[]"),
    re.compile(r"(?i)\s*(bearer|token)\s"),
)
PLAINTEXT_REFUSAL = ("plaintext credentials are refused: seal them to this session's attested key "
                     "(mcp-tee agent URL --github-token-stdin, or AttestedSession.provide_credentials)")


@dataclass(frozen=True, repr=False)
class CredentialPayload:
    """The opened plaintext of one sealed credential (never printed)."""

    kind: str
    token: str
    ttl_s: int

    def __repr__(self) -> str:
        return f"CredentialPayload(kind={self.kind!r}, ttl_s={self.ttl_s})"


def _payload(kind: Any, token: Any, ttl_s: Any) -> CredentialPayload:
    """Validate the fields; messages name the field, never its value."""
    if kind not in ALLOWED_CREDENTIAL_KINDS:
        raise ValueError(f"kind must be one of {sorted(ALLOWED_CREDENTIAL_KINDS)}")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise ValueError(f"token must be a string of 1..{MAX_TOKEN_CHARS} characters")
    # A token ends up in an HTTP header: no whitespace, no control characters.
    if not all(c.isascii() and c.isprintable() and not c.isspace() for c in token):
        raise ValueError("token must be printable ASCII without whitespace")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s < 1:
        raise ValueError("ttl_s must be a positive whole number of seconds")
    return CredentialPayload(kind, token, min(ttl_s, MAX_CREDENTIAL_TTL_S))


def credential_payload(kind: str, token: str, ttl_s: int = DEFAULT_CREDENTIAL_TTL_S) -> bytes:
    """The plaintext an agent seals (canonical JSON); raises ``ValueError`` for a field the server would refuse."""
    payload = _payload(kind, token, ttl_s)
    return canonical_json({"kind": payload.kind, "token": payload.token, "ttl_s": payload.ttl_s})


def parse_credential_payload(plaintext: bytes) -> CredentialPayload:
    """Parse an opened blob; raises ``ValueError`` with a secret-free message."""
    try:
        document = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("sealed content is not a JSON credential object") from None
    if not isinstance(document, dict) or not {"kind", "token"} <= set(document) <= PAYLOAD_FIELDS:
        raise ValueError(f"sealed content must be an object with fields {sorted(PAYLOAD_FIELDS)}")
    return _payload(document["kind"], document["token"], document.get("ttl_s", DEFAULT_CREDENTIAL_TTL_S))


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
    if session_id is None:
        _reject("no MCP session: session credentials bind to a session")  # Fail closed.
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
        session_id = owned_session_id(ctx.session_id) if ctx.session_id else None
        payload = _open(state, session_id, sealed)
        # Redact before storing: from here on the value may travel through logs of upstream errors.
        state.redactor.add_secret(payload.token)
        state.sessions.add_credential(session_id, payload.kind, payload.token, payload.ttl_s)
        logger.info("session credentials of kind %s provided (ttl %d s)", payload.kind, payload.ttl_s)
        return {"kind": payload.kind, "ttl_s": payload.ttl_s,
                "session_credentials": state.sessions.active_credentials(session_id)}
