"""Slowloris: connections slow to send headers (issue 13, finding 11) or a body are cut off; connections are capped."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl
import time
from contextlib import AsyncExitStack
from typing import Iterable
from urllib.parse import urlsplit

import pytest

from app.attestation.channel import TlsChannel
from app.config import DEFAULT_REQUEST_BODY_TIMEOUT_S
from app.server.http_limits import BODY_MIN_RATE_BYTES_PER_S, HEADER_TIMEOUT_S, BoundedServer, listener_options
from tests.support.authed import LEGACY, MODERN, authed_stack
from tests.support.canaries import CANARY_GITHUB_TOKEN, assert_no_canary
from tests.support.server_process import ServerProcess
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

    def test_the_production_deadlines_are_the_documented_ones(self):
        assert listener_options()["http"].header_timeout_s == HEADER_TIMEOUT_S == 10.0
        assert BoundedServer.handshake_timeout_s == HEADER_TIMEOUT_S
        assert listener_options()["http"].body_timeout_s == DEFAULT_REQUEST_BODY_TIMEOUT_S == 30.0


TRICKLE_INTERVAL_S = 0.2
# The body starts with a canary: no byte of a body may reach a log or the audit trail.
TRICKLED_BODY = f'{{"canary": "{CANARY_GITHUB_TOKEN}"'.encode() + b" " * 100_000


def post_head(content_length: int, headers: dict[str, str]) -> bytes:
    """The request line and headers of a POST to /mcp whose body is still to come."""
    lines = ["POST /mcp HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             "Accept: application/json, text/event-stream", f"Content-Length: {content_length}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return "\r\n".join(lines).encode() + b"\r\n\r\n"


def slow_post(headers: dict[str, str] | None = None) -> bytes:
    """A sessionless (2026-07-28) POST whose 100 kB body is to be trickled."""
    return post_head(len(TRICKLED_BODY), {"MCP-Protocol-Version": MODERN, **(headers or {})})


async def feed(writer: asyncio.StreamWriter, pieces: Iterable[bytes], interval_s: float) -> None:
    """Write one of `pieces` every `interval_s`, until they run out or the server closes the connection."""
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(interval_s)
    except ConnectionError:
        pass


async def answer_before_close(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it is still open after `seconds`."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(4096), seconds):
            received += chunk
    except asyncio.TimeoutError:
        return None
    except ConnectionResetError:  # it closed while our next byte was on its way
        pass
    return received


async def trickled_answer(port: int, request: bytes, *, tls: ssl.SSLContext | None = None) -> bytes | None:
    """Send `request`, trickle its body a byte at a time, and return what the server said before it hung up.

    None means it never hung up: the attack held the connection past the deadline.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    writer.write(request)
    attack = asyncio.create_task(feed(writer, (bytes([byte]) for byte in TRICKLED_BODY), TRICKLE_INTERVAL_S))
    try:
        return await answer_before_close(reader, DEADLINE_S + MARGIN_S)
    finally:
        attack.cancel()
        writer.close()


def listener_refusals(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "http" and r["decision"]["layer"] == "listener"]


class TestSlowBody:
    """Headers complete, then a body of one byte every 0.2 s (a "slow POST").

    Before the body deadline, nothing bounded this: h11 bounds sizes only, uvicorn's keep-alive timer
    is cancelled by every byte received, and the header deadline ends once the headers are in. Run
    against the production limits (10 s headers, 5 s keep-alive), one such connection, fed a byte
    every 3 s, was still open and unanswered after 75 s (and then held shutdown for its whole grace
    period); a few hundred of them hold every connection slot, so everyone else gets 503. The same
    held after a 401: uvicorn drops the rest of an unread body, yet each byte keeps the connection
    alive, so the attack needs no token. Now the body must arrive within its deadline (plus what
    steady progress earns), or the request is answered 408 and the connection closed.
    """

    async def test_a_trickled_body_is_answered_408_and_audited(self, stack, caplog):
        caplog.set_level(logging.INFO, logger="app.server.http_limits")
        with serve(stack.http_app(), **listener_options(body_timeout_s=DEADLINE_S,
                                                        on_refusal=stack.record_refusal)) as base:
            answer = await trickled_answer(int(base.rsplit(":", 1)[1]), slow_post())
        assert answer is not None, "the trickled body held the connection past its deadline"
        assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower()
        await stack.audit.signed_head()  # every record enqueued so far is on disk
        refusal = listener_refusals(stack.records())[-1]
        assert refusal["path"] == "/mcp" and refusal["outcome"]["status"] == "408"
        assert refusal["decision"]["reason"].startswith("request body arrived too slowly")
        assert "refused POST /mcp: 408" in caplog.text
        assert_no_canary([caplog.text, stack.audit_path.read_text()], "the slow-body refusal")

    async def test_fifty_trickled_bodies_are_all_cut_off(self, stack):
        with serve(stack.http_app(), **listener_options(body_timeout_s=DEADLINE_S)) as base:
            port = int(base.rsplit(":", 1)[1])
            answers = await asyncio.gather(*(trickled_answer(port, slow_post()) for _ in range(50)))
        assert all(answer is not None for answer in answers), f"{answers.count(None)} of 50 were still open"
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)

    async def test_the_deadline_holds_over_tls(self, stack):
        """TEE mode serves the same protocol class over TLS: the body deadline starts after the handshake."""
        channel = TlsChannel.generate()
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False  # the deadline is under test here, not the key
        client.verify_mode = ssl.CERT_NONE
        with serve(stack.http_app(), server_class=BoundedServer,
                   ssl_context_factory=channel.uvicorn_ssl_context_factory,
                   **listener_options(body_timeout_s=DEADLINE_S)) as base:
            answer = await trickled_answer(int(base.rsplit(":", 1)[1]), slow_post(), tls=client)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408 ")

    async def test_an_authenticated_trickle_is_audited_under_its_principal_and_never_with_its_token(
            self, tmp_path, caplog):
        caplog.set_level(logging.INFO)
        with authed_stack(tmp_path, body_timeout_s=DEADLINE_S) as server:
            token = server.token("eve")
            port = urlsplit(server.url).port
            answer = await trickled_answer(port, slow_post({"Authorization": f"Bearer {token}"}))
            await server.stack.audit.signed_head()
        assert answer is not None and answer.startswith(b"HTTP/1.1 408 ")
        assert [r["principal"] for r in listener_refusals(server.stack.records())] == ["eve"]
        audit_text = server.stack.audit_path.read_text()
        assert token not in caplog.text and token not in audit_text
        assert_no_canary([caplog.text, audit_text], "the slow-body refusal")

    async def test_a_body_trickled_after_a_401_is_cut_off_too(self, tmp_path):
        """Auth answers 401 without reading the body; the trickle used to keep that connection alive."""
        with authed_stack(tmp_path, body_timeout_s=DEADLINE_S) as server:
            port = urlsplit(server.url).port
            answer = await trickled_answer(port, slow_post())
            await server.stack.audit.signed_head()
        assert answer is not None, "the trickle after the 401 held the connection past the body deadline"
        assert answer.startswith(b"HTTP/1.1 401 ") and b" 408 " not in answer  # the answer was already sent
        refusals = listener_refusals(server.stack.records())
        assert [(r["principal"], r["outcome"]["status"]) for r in refusals] == [("unauthenticated", "408")]

    async def test_a_steady_upload_longer_than_the_deadline_succeeds(self, stack):
        """Steady progress earns time: a 300 kB `initialize` sent over 3 s, three times the deadline, is served."""
        message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "steady", "version": "0"}}}
        body = json.dumps(message).encode() + b" " * 300_000  # JSON allows the padding; the size cap is 4 MiB
        chunk = 10_000  # every 0.1 s: 100 kB/s, well above the minimum rate the deadline asks for
        with serve(stack.http_app(), **listener_options(body_timeout_s=DEADLINE_S)) as base:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
            try:
                started = time.monotonic()
                writer.write(post_head(len(body), {}))
                await feed(writer, (body[offset:offset + chunk] for offset in range(0, len(body), chunk)), 0.1)
                status = await asyncio.wait_for(reader.readline(), 10)
            finally:
                writer.close()
        assert time.monotonic() - started > 2 * DEADLINE_S, "the upload must outlast the bare deadline"
        assert status.startswith(b"HTTP/1.1 200 "), status

    async def test_bytes_past_the_size_cap_earn_no_more_time(self, stack):
        """A fast stream of a body the app refused (413) by its declared size is still cut off."""
        options = listener_options(body_timeout_s=DEADLINE_S)
        cap = BODY_MIN_RATE_BYTES_PER_S  # shrunk so that the cap earns one second instead of 256
        options["http"] = type("SmallCapProtocol", (options["http"],), {"body_earning_cap_bytes": cap})
        chunk = b" " * 20_000  # every 0.1 s: 200 kB/s, far above the minimum rate
        with serve(stack.http_app(), **options) as base:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
            writer.write(post_head(100_000_000, {"MCP-Protocol-Version": MODERN}))
            sender = asyncio.create_task(feed(writer, itertools.repeat(chunk), 0.1))
            try:
                earned_s = cap / BODY_MIN_RATE_BYTES_PER_S
                answer = await answer_before_close(reader, DEADLINE_S + earned_s + MARGIN_S)
            finally:
                sender.cancel()
                writer.close()
        assert answer is not None, "a fast stream past the size cap kept earning time"
        assert answer.startswith(b"HTTP/1.1 413 ")

    async def test_mcp_tee_serve_applies_the_configured_deadline_and_audits_the_refusal(self, tmp_path):
        """The real CLI: `MCP_REQUEST_BODY_TIMEOUT_S` reaches the listener, and the refusal reaches the audit file."""
        audit_path = tmp_path / "audit.jsonl"
        server = ServerProcess({"MCP_REQUEST_BODY_TIMEOUT_S": str(DEADLINE_S), "MCP_AUDIT_LOG": str(audit_path)},
                               log_dir=tmp_path).start()
        try:
            answer = await trickled_answer(server.port, slow_post())
        finally:
            server.stop()  # writes the final checkpoint: every record is on disk
        assert answer is not None and answer.startswith(b"HTTP/1.1 408 ")
        records = [json.loads(line) for line in audit_path.read_text().splitlines()]
        assert [r["outcome"]["status"] for r in listener_refusals(records)] == ["408"]
        assert "refused POST /mcp: 408" in server.output()
        assert_no_canary([server.output(), audit_path.read_text()], "the server's slow-body refusal")


class TestNoSideDoors:
    async def test_a_websocket_upgrade_is_answered_as_plain_http_not_switched(self, stack):
        """uvicorn's WebSocket protocol would run outside the deadlines; the listener has none."""
        upgrade = (b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        with serve(stack.http_app(), **listener_options(header_timeout_s=DEADLINE_S)) as base:
            reader, writer = await asyncio.open_connection("127.0.0.1", urlsplit(base).port)
            try:
                writer.write(upgrade)
                status_line = await asyncio.wait_for(reader.readline(), DEADLINE_S + MARGIN_S)
            finally:
                writer.close()
        # The MCP transport answered it as HTTP (406: no `Accept: text/event-stream`); with uvicorn's
        # WebSocket protocol it would have been a handshake refused by the app (403) or accepted (101).
        assert status_line.startswith(b"HTTP/1.1 406 "), status_line

    async def test_a_refusal_after_the_audit_log_closed_is_logged_not_raised(self, tmp_path, caplog):
        from app.auth.resource_server import HttpRefusal
        from app.config import Settings
        from app.secrets.env import load_env_secrets
        from app.server.assembly import assemble

        server = assemble(Settings(audit_log=str(tmp_path / "audit.jsonl")), load_env_secrets({}))
        await server.aclose()
        with caplog.at_level(logging.WARNING, logger="app.server.assembly"):
            server.record_refusal(HttpRefusal(408, "request body too slow", "/mcp", None, layer="listener"))
        assert "not audited" in caplog.text and "/mcp" in caplog.text
