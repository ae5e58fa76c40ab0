"""Per-MCP-session state: the attested session key, nonces already used, and layer-2 credentials.

Threat model: a session's key and credentials must never serve another session
or another caller. Entries are keyed by the verified principal *and* the MCP
session id (`session_key`), so learning someone's session id (it travels
in a header, and newer protocol versions let clients pick it) gives a different
caller only an empty session of their own. State lives in memory only and is
bounded (an LRU cap on sessions, a TTL on credentials, swept on access), so a
client that opens sessions in a loop cannot grow it without limit. A nonce is
single-use per session, and per principal across sessions and attested
channels (on MCP 2026-07-28 each attestation may mint a new channel, so a
per-session set alone would let a nonce be attested twice): a replayed nonce
is refused, not re-attested.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from app.wire.session_seal import SessionKey
from app.errors import InvalidArgument
from app.wire.credentials import MAX_CREDENTIAL_TTL_S

MAX_SESSIONS = 1024
MAX_NONCES_PER_SESSION = 64
MAX_REMEMBERED_NONCES = 16_384
SWEEP_INTERVAL_S = 1.0


_OWNER_SEPARATOR = "\x1f"


def session_key(owner: str, session_id: str) -> str:
    """The registry key: a principal and one of its MCP session ids, together."""
    return f"{owner}{_OWNER_SEPARATOR}{session_id}"


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

    def __init__(self, *, clock: Callable[[], float] = time.time, max_sessions: int = MAX_SESSIONS,
                 on_forget: Callable[[str], None] = lambda value: None) -> None:
        self._clock = clock
        self._max_sessions = max_sessions
        self._on_forget = on_forget  # told each credential value that leaves memory (the redactor)
        self._sessions: OrderedDict[str, McpSession] = OrderedDict()
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self._principal_nonces: OrderedDict[str, None] = OrderedDict()  # bounded: oldest forgotten first

    def get(self, session_id: str) -> McpSession:
        """The session's state, created (with a fresh X25519 key) on first use."""
        with self._lock:
            self._sweep_expired()
            session = self._sessions.get(session_id)
            if session is None:
                session = McpSession(key=SessionKey.generate())
                self._sessions[session_id] = session
                while len(self._sessions) > self._max_sessions:
                    self._forget(self._sessions.popitem(last=False)[1])
            self._sessions.move_to_end(session_id)
            return session

    def _sweep_expired(self) -> None:
        """Drop expired credentials of every session, at most once a second (lock held)."""
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        for session in self._sessions.values():
            for kind, credential in list(session.credentials.items()):
                if credential.expires_at <= now:
                    del session.credentials[kind]
                    self._on_forget(credential.value)

    def _forget(self, session: McpSession) -> None:
        for credential in session.credentials.values():
            self._on_forget(credential.value)
        session.credentials.clear()

    def consume_nonce(self, session_id: str, nonce: str) -> McpSession:
        """Mark `nonce` used in this session; a reused nonce is refused."""
        session = self.get(session_id)
        owned_nonce = session_key(session_id.partition(_OWNER_SEPARATOR)[0], nonce)
        with self._lock:
            if nonce in session.used_nonces or owned_nonce in self._principal_nonces:
                raise InvalidArgument("this nonce was already used in this session; send a fresh one")
            if len(session.used_nonces) >= MAX_NONCES_PER_SESSION:
                raise InvalidArgument("too many attestations in this session; open a new session")
            session.used_nonces.add(nonce)
            self._principal_nonces[owned_nonce] = None
            if len(self._principal_nonces) > MAX_REMEMBERED_NONCES:
                self._principal_nonces.popitem(last=False)
        return session

    def add_credential(self, session_id: str, kind: str, value: str, ttl_s: float) -> SessionCredential:
        ttl_s = min(max(ttl_s, 1.0), MAX_CREDENTIAL_TTL_S)
        credential = SessionCredential(kind=kind, value=value, expires_at=self._clock() + ttl_s)
        session = self.get(session_id)
        with self._lock:
            replaced = session.credentials.get(kind)
            session.credentials[kind] = credential
        if replaced is not None and replaced.value != value:
            self._on_forget(replaced.value)
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
                self._on_forget(credential.value)
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
            session = self._sessions.pop(session_id, None)
            if session is not None:
                self._forget(session)
