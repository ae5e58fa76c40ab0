"""Per-MCP-session state: the attested session key, nonces already used, and layer-2 credentials.

Threat model: a session's key and credentials must never serve another session
or another caller. Entries are keyed by the verified principal *and* the MCP
session id (`session_key`), so learning someone's session id (it travels
in a header, and newer protocol versions let clients pick it) gives a different
caller only an empty session of their own. State lives in memory only and is
bounded (a TTL on credentials, swept on access, and a cap on sessions), so a
client that opens sessions in a loop cannot grow it without limit. The cap is
fair (`app.fair_lru`): each principal holds at most `MAX_SESSIONS_PER_PRINCIPAL`
sessions and attested channels and, past it, loses its own least recently used
one, never another principal's. On MCP 2026-07-28 every `attestation_status`
with a nonce mints a channel, limited only by that tool's quota, so a single
shared LRU let one principal evict everyone else's session keys and sealed
credentials. `MAX_SESSIONS` stays as a backstop for many principals at once:
past it the principal holding the most entries loses its least recently used
one. A nonce is single-use per session, and per principal across sessions and
attested channels (on MCP 2026-07-28 each attestation may mint a new channel,
so a per-session set alone would let a nonce be attested twice): a replayed
nonce is refused, not re-attested. The per-principal nonce memory is bounded
the same fair way, so one principal's attestations cannot make the server
forget another principal's used nonces.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from app.errors import InvalidArgument
from app.fair_lru import FairLru
from app.wire.credentials import MAX_CREDENTIAL_TTL_S
from app.wire.session_seal import SessionKey

MAX_SESSIONS = 1024
# Twice the policy's `[sessions] max_open_per_principal` (32, app/capabilities.toml): a principal using
# every 2025-11-25 session it may open still has as many attested 2026-07-28 channels before it loses
# its own oldest; 16 principals fill `MAX_SESSIONS` at this share before the backstop evicts anyone.
MAX_SESSIONS_PER_PRINCIPAL = 64
MAX_NONCES_PER_SESSION = 64
MAX_REMEMBERED_NONCES = 16_384
# Over half an hour of one principal attesting as fast as the policy's `attestation_status` quota
# allows (30 a minute); 16 principals at this share fill `MAX_REMEMBERED_NONCES`.
MAX_REMEMBERED_NONCES_PER_PRINCIPAL = 1024
SWEEP_INTERVAL_S = 1.0


_OWNER_SEPARATOR = "\x1f"


def session_key(owner: str, session_id: str) -> str:
    """The registry key: a principal and one of its MCP session ids, together."""
    return f"{owner}{_OWNER_SEPARATOR}{session_id}"


def _owner(key: str) -> str:
    """The principal part of a `session_key` (the whole key when it names none)."""
    return key.partition(_OWNER_SEPARATOR)[0]


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
        max_sessions: Sessions held altogether; past it the principal holding the most loses its least
            recently used one.
        max_sessions_per_principal: Sessions one principal holds; past it that principal loses its own
            least recently used one.
        on_forget: Told each credential value that leaves memory (the redactor drops it).

    Example:
        sessions = SessionRegistry()
        session = sessions.get(ctx.session_id)
        sessions.consume_nonce(ctx.session_id, nonce)
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, max_sessions: int = MAX_SESSIONS,
                 max_sessions_per_principal: int = MAX_SESSIONS_PER_PRINCIPAL,
                 on_forget: Callable[[str], None] = lambda value: None) -> None:
        self._clock = clock
        self._on_forget = on_forget
        self._sessions: FairLru[McpSession] = FairLru(per_owner=max_sessions_per_principal, total=max_sessions,
                                                      on_evict=self._forget)
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        # Nonces used by each principal, across its sessions and channels: oldest forgotten first.
        self._principal_nonces: FairLru[None] = FairLru(per_owner=MAX_REMEMBERED_NONCES_PER_PRINCIPAL,
                                                        total=MAX_REMEMBERED_NONCES)

    def get(self, session_id: str) -> McpSession:
        """The session's state, created (with a fresh X25519 key) on first use."""
        with self._lock:
            self._sweep_expired()
            session = self._sessions.get(_owner(session_id), session_id)
            if session is None:
                session = McpSession(key=SessionKey.generate())
                self._sessions.put(_owner(session_id), session_id, session)
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
        owner = _owner(session_id)
        with self._lock:
            if nonce in session.used_nonces or self._principal_nonces.contains(owner, nonce):
                raise InvalidArgument("this nonce was already used in this session; send a fresh one")
            if len(session.used_nonces) >= MAX_NONCES_PER_SESSION:
                raise InvalidArgument("too many attestations in this session; open a new session")
            session.used_nonces.add(nonce)
            self._principal_nonces.put(owner, nonce, None)
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
            session = self._sessions.get(_owner(session_id), session_id)  # using a credential is a use
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
            session = self._sessions.pop(_owner(session_id), session_id)
            if session is not None:
                self._forget(session)
