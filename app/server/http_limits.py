"""Connection limits for the HTTP listener: a header-read deadline, a keep-alive timeout and a connection cap.

Threat model: anyone who reaches the port can open connections and feed them slowly (slowloris).
uvicorn closes an idle keep-alive connection, but a connection that has sent *part* of a request's
headers waits for the rest forever, so a few hundred such sockets hold the server's file
descriptors and memory. Here every request's headers must be complete within `HEADER_TIMEOUT_S`
of the connection opening (or of the previous response), or the connection is closed; an idle
keep-alive connection is closed after `KEEP_ALIVE_TIMEOUT_S`; and beyond `MAX_CONNECTIONS` open
connections new requests get 503. Over TLS (TEE mode) the header deadline only starts once the
handshake is done, so the handshake has its own deadline of the same length (`BoundedServer`): a
socket that never completes it is closed, and while it tries it counts against no request. Request
bodies are bounded by the MCP transport's size limit; how long a body may trickle is not bounded here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_TIMEOUT_S = 5
MAX_CONNECTIONS = 512
MAX_HEADER_BYTES = 64 * 1024


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request's headers to arrive complete."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole request line and header block arrived
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the next request's headers get the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def listener_options(header_timeout_s: float = HEADER_TIMEOUT_S,
                     max_connections: int = MAX_CONNECTIONS) -> dict[str, Any]:
    """The uvicorn.Config keywords that bound connections (tests shrink the deadline and the cap).

    Example:
        >>> uvicorn.Config(app, host="127.0.0.1", port=8080, **listener_options())
    """
    protocol = type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})
    return {"http": protocol, "timeout_keep_alive": KEEP_ALIVE_TIMEOUT_S, "limit_concurrency": max_connections,
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES}


class BoundedServer(uvicorn.Server):
    """uvicorn's server whose TLS listeners give each handshake `handshake_timeout_s` to complete.

    uvicorn passes no `ssl_handshake_timeout` to `loop.create_server` (asyncio's default is 60 s),
    so a peer that opens TCP and never speaks TLS would sit outside the header deadline for a
    minute. The deadline is added to exactly the listeners uvicorn creates during start-up.
    """

    handshake_timeout_s = HEADER_TIMEOUT_S

    async def startup(self, sockets: list | None = None) -> None:
        loop = asyncio.get_running_loop()
        create_server = loop.create_server

        async def with_handshake_deadline(*args: Any, **kwargs: Any) -> asyncio.Server:
            if kwargs.get("ssl") is not None:
                kwargs["ssl_handshake_timeout"] = self.handshake_timeout_s
            return await create_server(*args, **kwargs)

        loop.create_server = with_handshake_deadline  # type: ignore[method-assign]
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server
