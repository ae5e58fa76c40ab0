"""ASGI wrapper: cap the MCP sessions each principal holds open, and rate-limit how fast it opens them.

Threat model: a 2025-11-25 `initialize` makes the SDK allocate a session (a transport, a server
task, buffers) that lives until the client ends it or it idles out (`SESSION_IDLE_TIMEOUT_S`). The
SDK caps sessions only server-wide, so one read token could open them all and lock every other
`initialize`-based client (the agent included) out for the idle timeout. Here each principal may
hold at most `max_open_per_principal` open sessions, and opening one costs a token from that
principal's bucket (`opens`): the next `initialize` is refused with 429 and a message that says
what to do, and the sessions already open are never touched (refusing, not evicting, so one
client's leak cannot end another session of the same user mid-task). This layer counts a session
from the SDK's own answer (a 2xx that carries `Mcp-Session-Id`) and forgets it when the client
ends it (`DELETE`), when the SDK no longer knows it (404), or after the same idle timeout the
SDK applies, measured the same way (no request in flight). 2026-07-28 requests are sessionless
and allocate nothing here; the tool calls that do allocate state (attestation nonces, session
credentials) have tool quotas. Each refusal is audited through `on_refusal`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.principal import LOCAL_SUBJECT, PRINCIPAL_SCOPE_KEY
from app.auth.resource_server import HttpRefusal, RefusalHook
from app.capability_policy import SessionLimits
from app.middleware.quotas import BucketsByKey, Clock

SESSION_IDLE_TIMEOUT_S = 30 * 60  # handed to the SDK too, so both forget an idle session together
MAX_TRACKED_PRINCIPALS = 10_000
TOO_MANY_REQUESTS = 429
JSONRPC_SERVER_ERROR = -32000
LAYER = "sessions"


@dataclass
class _OpenSession:
    owner: str
    last_active: float
    in_flight: int = 0


class SessionAdmission:
    """Admits a new MCP session only within its principal's cap and opening rate.

    Args:
        app: The MCP HTTP app (inside bearer auth, which attaches the principal).
        limits: The policy's session limits.
        path: The MCP endpoint path.
        clock: Monotonic seconds; injectable so tests never sleep.
        on_refusal: Audits each refusal.

    Example:
        >>> app = SessionAdmission(mcp.http_app(path="/mcp"), policy.sessions, "/mcp")
    """

    def __init__(self, app: ASGIApp, limits: SessionLimits, path: str, *, clock: Clock = time.monotonic,
                 on_refusal: RefusalHook | None = None) -> None:
        self._app = app
        self._limits = limits
        self._path = path
        self._clock = clock
        self._on_refusal = on_refusal
        self._sessions: dict[str, _OpenSession] = {}
        self._opening: dict[str, int] = {}  # owner -> opening requests in flight
        self._buckets = BucketsByKey(clock, MAX_TRACKED_PRINCIPALS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self._path:
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        session_id = headers.get(b"mcp-session-id", b"").decode("latin-1")
        if session_id:
            await self._serve_in_session(session_id, scope, receive, send)
        elif scope["method"] == "POST" and headers.get(b"mcp-protocol-version", b"").decode("latin-1") in (
                {""} | set(HANDSHAKE_PROTOCOL_VERSIONS)):
            await self._admit(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    def open_sessions(self, owner: str) -> int:
        """Sessions `owner` holds open now (idle ones past the timeout no longer count)."""
        self._forget_idle()
        return sum(1 for session in self._sessions.values() if session.owner == owner)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = _owner(scope)
        held = self.open_sessions(owner) + self._opening.get(owner, 0)
        if held >= self._limits.max_open_per_principal:
            await self._refuse(scope, receive, send,
                               f"this principal already holds {held} open MCP sessions (the limit is "
                               f"{self._limits.max_open_per_principal}); end one with an HTTP DELETE carrying its "
                               f"Mcp-Session-Id, or let an idle one expire after {SESSION_IDLE_TIMEOUT_S // 60} min",
                               retry_after_s=60)
            return
        bucket = self._buckets.bucket(owner, self._limits.opens)
        wait = bucket.wait_time()
        if wait > 0:
            await self._refuse(scope, receive, send, "too many new MCP sessions from this principal",
                               retry_after_s=math.ceil(wait))
            return
        bucket.take()
        settled = False  # counted in `_opening` until the SDK answers, then (if it opened one) in `_sessions`

        def settle() -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            self._opening[owner] -= 1
            if not self._opening[owner]:
                del self._opening[owner]

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                new_id = dict(message.get("headers", [])).get(b"mcp-session-id", b"").decode("latin-1")
                if new_id and 200 <= message["status"] < 300:
                    self._sessions[new_id] = _OpenSession(owner, self._clock())
                settle()
            await send(message)

        self._opening[owner] = self._opening.get(owner, 0) + 1
        try:
            await self._app(scope, receive, observe)
        finally:
            settle()

    async def _serve_in_session(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.owner != _owner(scope):
            await self._app(scope, receive, send)  # the SDK answers (404 for a stranger's or unknown id)
            return
        statuses: list[int] = []

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        session.in_flight += 1
        try:
            await self._app(scope, receive, observe)
        finally:
            session.in_flight -= 1
            session.last_active = self._clock()
            ended = scope["method"] == "DELETE" and statuses and 200 <= statuses[0] < 300
            if ended or statuses[:1] == [404]:
                self._sessions.pop(session_id, None)

    def _forget_idle(self) -> None:
        cutoff = self._clock() - SESSION_IDLE_TIMEOUT_S
        for session_id in [sid for sid, s in self._sessions.items() if not s.in_flight and s.last_active < cutoff]:
            del self._sessions[session_id]

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, reason: str, *, retry_after_s: int) -> None:
        """The one way this layer refuses: audit, then a JSON-RPC error with 429 and Retry-After."""
        if self._on_refusal is not None:
            self._on_refusal(HttpRefusal(TOO_MANY_REQUESTS, reason, scope["path"], _owner(scope), layer=LAYER))
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": JSONRPC_SERVER_ERROR,
                                                          "message": f"{reason}; retry after {retry_after_s} s"}}
        await JSONResponse(body, status_code=TOO_MANY_REQUESTS,
                           headers={"Retry-After": str(retry_after_s)})(scope, receive, send)


def _owner(scope: Scope) -> str:
    principal = scope.get(PRINCIPAL_SCOPE_KEY)  # absent only when auth is off (loopback dev)
    return principal.subject if principal is not None else LOCAL_SUBJECT
