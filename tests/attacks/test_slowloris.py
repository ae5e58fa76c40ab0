"""Issue 13, finding 11: connections that never finish their headers are closed; connections are capped."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import pytest

from app.attestation.channel import TlsChannel
from app.server.http_limits import HEADER_TIMEOUT_S, BoundedServer, listener_options
from tests.support.stack import Stack, serve

DEADLINE_S = 1.0
MARGIN_S = 4.0  # generous: the machine is shared
PARTIAL_HEADERS = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return Stack(tmp_path_factory.mktemp("slowloris"))


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection (EOF) within `seconds`."""
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
        return True
    except asyncio.TimeoutError:
        return False


async def open_half(port: int, count: int, connections: AsyncExitStack) -> list[asyncio.StreamReader]:
    readers = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connections.callback(writer.close)
        writer.write(PARTIAL_HEADERS)
        await writer.drain()
        readers.append(reader)
    return readers


class TestSlowloris:
    async def test_fifty_half_open_connections_are_closed_within_the_header_deadline(self, stack):
        with serve(stack.http_app(), **listener_options(header_timeout_s=DEADLINE_S)) as base:
            port = int(base.rsplit(":", 1)[1])
            async with AsyncExitStack() as connections:
                started = time.monotonic()
                readers = await open_half(port, 50, connections)
                closed = await asyncio.gather(*(closed_within(r, DEADLINE_S + MARGIN_S) for r in readers))
                assert all(closed), f"{closed.count(False)} of 50 half-open connections were still open"
                assert time.monotonic() - started < DEADLINE_S + MARGIN_S

    async def test_the_deadline_holds_again_after_a_served_request(self, stack):
        with serve(stack.http_app(), **listener_options(header_timeout_s=DEADLINE_S)) as base:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
            try:
                writer.write(HEALTH)
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
                writer.write(PARTIAL_HEADERS)  # the next request on the keep-alive connection stalls
                assert await closed_within(reader, DEADLINE_S + MARGIN_S)
            finally:
                writer.close()

    async def test_beyond_the_connection_cap_new_requests_get_503(self, stack):
        with serve(stack.http_app(), **listener_options(header_timeout_s=30, max_connections=5)) as base:
            port = int(base.rsplit(":", 1)[1])
            async with AsyncExitStack() as connections:
                await open_half(port, 5, connections)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                connections.callback(writer.close)
                writer.write(HEALTH)
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 503")

    async def test_connections_that_never_finish_the_tls_handshake_are_closed(self, stack):
        """TEE mode serves TLS: the header deadline starts after the handshake, so the handshake has its own."""
        server_class = type("ShortHandshakeServer", (BoundedServer,), {"handshake_timeout_s": DEADLINE_S})
        channel = TlsChannel.generate()
        with serve(stack.http_app(), server_class=server_class, ssl_context_factory=channel.uvicorn_ssl_context_factory,
                   **listener_options(header_timeout_s=DEADLINE_S)) as base:
            port = int(base.rsplit(":", 1)[1])
            async with AsyncExitStack() as connections:
                readers = []
                for _ in range(10):  # TCP only: not one byte of a TLS ClientHello
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    connections.callback(writer.close)
                    readers.append(reader)
                closed = await asyncio.gather(*(closed_within(r, DEADLINE_S + MARGIN_S) for r in readers))
        assert all(closed), f"{closed.count(False)} of 10 silent TLS connections were still open"

    def test_the_production_deadline_is_the_documented_one(self):
        assert listener_options()["http"].header_timeout_s == HEADER_TIMEOUT_S == 10.0
        assert BoundedServer.handshake_timeout_s == HEADER_TIMEOUT_S
