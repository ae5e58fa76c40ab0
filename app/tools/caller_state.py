"""Which per-caller state a tool call belongs to: its MCP session (2025-11-25) or its attested channel (2026-07-28).

Threat model: the HPKE key layer-2 credentials are sealed to, the single-use
nonces and the credentials themselves must serve one caller's one attested
conversation and nothing else. On handshake-era connections that conversation
is the MCP session. MCP 2026-07-28 has no session, and every request looks
like a new connection, so the server mints an *attested channel* instead:
``attestation_status(nonce)`` on a request that names no channel creates a
fresh X25519 key and a random 256-bit handle, the token binds that key (and
the TLS key the request arrived on), and the answer returns the handle. The
client names it in each later request's ``_meta["dev.mcp-tee/channel"]``. State
is keyed by the verified principal *and* the handle, so a handle learned by
someone else opens only an empty channel of their own; a request that names
no (or a malformed) handle has no channel state at all. Handles travel only
inside the attested, pinned TLS connection.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from app.sessions import session_key
from app.wire.tls_binding import CHANNEL_META_KEY

CHANNEL_HANDLE_BYTES = 32
CHANNEL_HANDLE_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
# Channel handles and MCP session ids share the registry; the prefix keeps them apart.
CHANNEL_PREFIX = "channel:"


def is_sessionless(ctx: Any) -> bool:
    """True on MCP 2026-07-28 requests, which carry no session."""
    request = getattr(ctx, "request_context", None)
    return request is not None and request.protocol_version in MODERN_PROTOCOL_VERSIONS


def named_channel(ctx: Any) -> str | None:
    """The well-formed channel handle the request names in ``_meta``, if any."""
    request = getattr(ctx, "request_context", None)
    meta = getattr(request, "meta", None) or {}
    handle = meta.get(CHANNEL_META_KEY) if isinstance(meta, dict) else None
    return handle if isinstance(handle, str) and CHANNEL_HANDLE_SHAPE.fullmatch(handle) else None


def new_channel_handle() -> str:
    return secrets.token_urlsafe(CHANNEL_HANDLE_BYTES)


def caller_state_key(ctx: Any, subject: str, handle: str | None = None) -> str | None:
    """The registry key of this caller's state: principal + MCP session, or principal + channel handle.

    ``handle`` overrides the one named in ``_meta`` (a channel minted by this very request). None when a
    2026-07-28 request names no channel: there is no state to use.
    """
    if not is_sessionless(ctx):
        return session_key(subject, ctx.session_id)
    handle = handle or named_channel(ctx)
    return session_key(subject, CHANNEL_PREFIX + handle) if handle else None
