"""ASGI wrapper: when a client ends its MCP session, forget that session's key and credentials."""

from __future__ import annotations

from app.auth.principal import LOCAL_SUBJECT, PRINCIPAL_SCOPE_KEY
from app.sessions import SessionRegistry, session_key


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
        principal = scope.get(PRINCIPAL_SCOPE_KEY)  # absent only when auth is off (loopback dev)
        owner = principal.subject if principal is not None else LOCAL_SUBJECT
        statuses: list[int] = []

        async def observe(message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        await self._app(scope, receive, observe)
        if session_id and statuses and 200 <= statuses[0] < 300:
            self._registry.discard(session_key(owner, session_id))
