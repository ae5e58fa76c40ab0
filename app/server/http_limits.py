"""Connection limits for the HTTP listener: header and body deadlines, a keep-alive timeout and a connection cap.

Threat model: anyone who reaches the port can open connections and feed them slowly (slowloris).
What the stack bounds on its own: h11 bounds the *size* of a request line and header block
(`h11_max_incomplete_event_size`) but, having no I/O, no time at all. uvicorn's `timeout_keep_alive`
runs only between requests (armed when a response completes) and any byte received cancels it;
nothing is armed when a connection opens; asyncio gives a TLS handshake 60 s. So a connection that
sends part of its headers, or all of them and then one byte of body every few seconds, holds a
socket, a server task and buffers for as long as it likes, and a few hundred of them take the
connection cap: everyone else gets 503. A body that trickles after the app has already answered
(a 401 before the body was read) was held the same way, with no token needed.

What is added here:
- Headers must be complete within `HEADER_TIMEOUT_S` of the connection opening (or of the previous
  response), or the connection is closed. Over TLS (TEE mode) that clock starts after the
  handshake, so the handshake has its own deadline of the same length (`BoundedServer`).
- Once the headers are in, the whole body must arrive within `body_timeout_s`
  (`MCP_REQUEST_BODY_TIMEOUT_S`, default 30 s) plus one second for every
  `BODY_MIN_RATE_BYTES_PER_S` bytes of it already received, up to the MCP transport's size cap
  (4 MiB). A steady upload of any size within the cap earns its time, a trickle does not, and no
  stream of bytes, even one the app no longer reads, holds a connection past 30 s + 256 s. When
  the deadline passes the request is refused on one path (`_refuse_slow_body`): logged and
  audited (`on_refusal`) by method, path and principal only, never a header or a byte of the
  body; then answered 408 and closed, or just closed when a response has already begun. The same
  protocol class serves plain HTTP and TLS.
- An idle keep-alive connection is closed after `KEEP_ALIVE_TIMEOUT_S`, and beyond
  `MAX_CONNECTIONS` open connections new requests get 503.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.auth.principal import PRINCIPAL_SCOPE_KEY
from app.auth.resource_server import HttpRefusal, RefusalHook
from app.config import DEFAULT_REQUEST_BODY_TIMEOUT_S

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
# 128 kbit/s: slower than any link a large upload is sent over, yet holding the 512 connections at
# this rate costs an attacker 64 Mbit/s sustained, a flood rather than a slowloris.
BODY_MIN_RATE_BYTES_PER_S = 16 * 1024
# Bytes beyond the MCP transport's size cap (it answers 413) earn no more time: the longest hold is 30 s + 256 s.
BODY_EARNING_CAP_BYTES = DEFAULT_MAX_REQUEST_BODY_SIZE
KEEP_ALIVE_TIMEOUT_S = 5
MAX_CONNECTIONS = 512
MAX_HEADER_BYTES = 64 * 1024
REQUEST_TIMEOUT = 408
LAYER = "listener"


class RequestDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus deadlines for each request's headers and body to arrive complete."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_timeout_s = DEFAULT_REQUEST_BODY_TIMEOUT_S
    body_earning_cap_bytes = BODY_EARNING_CAP_BYTES
    on_refusal: RefusalHook | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_received = 0
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._body_deadline is not None:
            self._body_received += len(data)
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole request line and header block arrived
            self._disarm_header_deadline()
        if self.conn.their_state is h11.SEND_BODY:
            if self._body_deadline is None:
                self._arm_body_deadline()
        else:
            self._disarm_body_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the next request's headers get the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        self._disarm_body_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        _cancel(getattr(self, "_header_deadline", None))
        self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def _arm_body_deadline(self) -> None:
        self._body_started = self.loop.time()
        self._body_received = 0
        self._body_deadline = self.loop.call_later(self.body_timeout_s, self._body_deadline_passed)

    def _disarm_body_deadline(self) -> None:
        _cancel(self._body_deadline)
        self._body_deadline = None

    def _body_deadline_passed(self) -> None:
        self._body_deadline = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        earned = min(self._body_received, self.body_earning_cap_bytes) / BODY_MIN_RATE_BYTES_PER_S
        remaining = self._body_started + self.body_timeout_s + earned - self.loop.time()
        if remaining > 0:  # a steady upload has earned more time
            self._body_deadline = self.loop.call_later(remaining, self._body_deadline_passed)
            return
        self._refuse_slow_body()

    def _refuse_slow_body(self) -> None:
        """The one way this layer refuses: log and audit (no header, no body), then answer 408 or close."""
        reason = (f"request body arrived too slowly: {self.body_timeout_s:g} s allowed, plus 1 s per "
                  f"{BODY_MIN_RATE_BYTES_PER_S // 1024} KiB received")
        method, path = self.scope["method"], self.scope["path"]
        principal = self.scope.get(PRINCIPAL_SCOPE_KEY)  # set by the auth layer once it accepted the token
        logger.info("refused %s %s: %d %s", method, path[:200], REQUEST_TIMEOUT, reason)
        if self.on_refusal is not None:
            self.on_refusal(HttpRefusal(REQUEST_TIMEOUT, reason, path, principal.subject if principal else None,
                                        layer=LAYER))
        cycle = self.cycle
        cycle.disconnected = True  # the app's next receive() says so, and whatever it sends is dropped
        cycle.message_event.set()
        if not cycle.response_started:
            self._send_request_timeout(reason)
        self.transport.close()

    def _send_request_timeout(self, reason: str) -> None:
        response = h11.Response(status_code=REQUEST_TIMEOUT, reason=b"Request Timeout",
                                headers=[(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")])
        for event in (response, h11.Data(data=reason.encode()), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))


def _cancel(deadline: asyncio.TimerHandle | None) -> None:
    if deadline is not None:
        deadline.cancel()


def listener_options(header_timeout_s: float = HEADER_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS, *,
                     body_timeout_s: float = DEFAULT_REQUEST_BODY_TIMEOUT_S,
                     on_refusal: RefusalHook | None = None) -> dict[str, Any]:
    """The uvicorn.Config keywords that bound connections (tests shrink the deadlines and the cap).

    Args:
        header_timeout_s: Seconds for each request's headers to arrive complete.
        max_connections: Open connections beyond which new requests get 503.
        body_timeout_s: Seconds for a request body to arrive, plus what steady progress earns
            (`MCP_REQUEST_BODY_TIMEOUT_S`).
        on_refusal: Audits each request refused for a slow body.

    Example:
        >>> uvicorn.Config(app, host="127.0.0.1", port=8080, **listener_options(on_refusal=server.record_refusal))
    """
    protocol = type("RequestDeadlineProtocol", (RequestDeadlineProtocol,), {
        "header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s,
        "on_refusal": staticmethod(on_refusal) if on_refusal is not None else None})
    # No WebSocket protocol: the app serves none, and uvicorn's would bypass the deadlines above.
    return {"http": protocol, "ws": "none", "timeout_keep_alive": KEEP_ALIVE_TIMEOUT_S,
            "limit_concurrency": max_connections, "h11_max_incomplete_event_size": MAX_HEADER_BYTES}


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
