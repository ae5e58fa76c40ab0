"""Per-MCP-session state: the attested session key, nonces already used, and layer-2 credentials.

Threat model: a session's key and credentials must never serve another session.
Everything is keyed by the MCP session id the transport assigned, lives in
memory only, and is bounded (an LRU cap on sessions, a TTL on credentials), so
a client that opens sessions in a loop cannot grow the map without limit.
A nonce is single-use per session: a replayed nonce is refused, not re-attested.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from app.attestation.session import SessionKey
from app.errors import InvalidArgument

MAX_SESSIONS = 1024
MAX_NONCES_PER_SESSION = 64
DEFAULT_CREDENTIAL_TTL_S = 15 * 60
MAX_CREDENTIAL_TTL_S = 60 * 60


@dataclass(frozen=True, repr=False)
class SessionCredential:
    """One user-scoped credential provided for this session (never printed)."""

    kind: str
    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"SessionCredential(kind={self.kind!r})"


@dataclass
class McpSession:
    """What the server holds for one MCP session."""

    key: SessionKey
    used_nonces: set[str] = field(default_factory=set)
    credentials: dict[str, SessionCredential] = field(default_factory=dict)
    attested: bool = False


class SessionRegistry:
    """Bounded map of MCP session id → `McpSession`.

    Args:
        clock: Wall-clock seconds (injectable for TTL tests).
        max_sessions: Least recently used sessions beyond this are forgotten.

    Example:
        sessions = SessionRegistry()
        session = sessions.get(ctx.session_id)
        sessions.consume_nonce(ctx.session_id, nonce)
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, max_sessions: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self._max_sessions = max_sessions
        self._sessions: OrderedDict[str, McpSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> McpSession:
        """The session's state, created (with a fresh X25519 key) on first use."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                session = McpSession(key=SessionKey.generate())
                self._sessions[session_id] = session
                while len(self._sessions) > self._max_sessions:
                    self._sessions.popitem(last=False)
            self._sessions.move_to_end(session_id)
            return session

    def consume_nonce(self, session_id: str, nonce: str) -> McpSession:
        """Mark `nonce` used in this session; a reused nonce is refused."""
        session = self.get(session_id)
        with self._lock:
            if nonce in session.used_nonces:
                raise InvalidArgument("this nonce was already used in this session; send a fresh one")
            if len(session.used_nonces) >= MAX_NONCES_PER_SESSION:
                raise InvalidArgument("too many attestations in this session; open a new session")
            session.used_nonces.add(nonce)
        return session

    def add_credential(self, session_id: str, kind: str, value: str, ttl_s: float) -> SessionCredential:
        ttl_s = min(max(ttl_s, 1.0), MAX_CREDENTIAL_TTL_S)
        credential = SessionCredential(kind=kind, value=value, expires_at=self._clock() + ttl_s)
        self.get(session_id).credentials[kind] = credential
        return credential

    def credential(self, session_id: str | None, kind: str) -> str | None:
        """A live credential of `kind` for this session; expired ones are discarded on sight."""
        if session_id is None:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            credential = session.credentials.get(kind)
            if credential is None:
                return None
            if credential.expires_at <= self._clock():
                del session.credentials[kind]
                return None
            return credential.value

    def active_credentials(self, session_id: str) -> list[dict[str, object]]:
        """Kinds and expiries of this session's live credentials; never their values."""
        session = self.get(session_id)
        now = self._clock()
        return [
            {"kind": credential.kind, "expires_in_s": int(credential.expires_at - now)}
            for credential in list(session.credentials.values())
            if credential.expires_at > now
        ]

    def discard(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


class ForgetEndedSessions:
    """ASGI wrapper: when a client ends its MCP session (`DELETE` with `Mcp-Session-Id`), forget it.

    The MCP SDK offers no session-end hook, so this watches the transport's own
    termination request and drops the session's key and credentials once the
    transport accepted it. Sessions that simply go idle age out by LRU and TTL.
    """

    def __init__(self, app, registry: SessionRegistry, path: str) -> None:
        self._app = app
        self._registry = registry
        self._path = path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "DELETE" or scope["path"].rstrip("/") != self._path:
            await self._app(scope, receive, send)
            return
        session_id = dict(scope["headers"]).get(b"mcp-session-id", b"").decode("latin-1")
        statuses: list[int] = []

        async def observe(message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        await self._app(scope, receive, observe)
        if session_id and statuses and 200 <= statuses[0] < 300:
            self._registry.discard(session_id)
