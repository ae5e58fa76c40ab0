"""On plain HTTP nothing binds the connection to the TEE, so the agent sends no bearer token to a remote host."""

from __future__ import annotations

import socket
import threading

import pytest

from app.agent import AttestedSession, TrustPolicy
from app.agent.errors import ChannelNotAttested
from app.wire.capability_token import TOKEN_MARKER

REMOTE_NAME = "mcp.example.test"
CANARY_BEARER = "CANARY-bearer-must-not-cross-plain-http"


class RecordingSink:
    """A TCP listener on loopback that keeps every byte a client sends it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.received = bytearray()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    while chunk := connection.recv(65536):
                        self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def remote_sink(monkeypatch):
    """`mcp.example.test` resolves to a recording sink, so a token sent there would be seen."""
    sink = RecordingSink()
    resolve = socket.getaddrinfo

    def fake_getaddrinfo(host, *args, **kwargs):
        return resolve("127.0.0.1" if host == REMOTE_NAME else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    yield sink
    sink.close()


TRUST = TrustPolicy.maa("sharedeus.eus.attest.azure.net", "ab" * 32)


class TestNoBearerOverPlainHttp:
    async def test_a_remote_http_url_gets_no_token(self, remote_sink):
        url = f"http://{REMOTE_NAME}:{remote_sink.port}/mcp"
        with pytest.raises(ChannelNotAttested, match="bearer token was not sent"):
            async with AttestedSession(url, trust=TRUST, bearer_token=CANARY_BEARER):
                pass
        assert CANARY_BEARER.encode() not in remote_sink.received
        assert b"Authorization" not in remote_sink.received

    async def test_a_capability_is_never_presented_over_plain_http(self, remote_sink):
        url = f"http://127.0.0.1:{remote_sink.port}/mcp"
        capability = f"{TOKEN_MARKER}CANARYcapability"
        with pytest.raises(ChannelNotAttested, match="capability"):
            async with AttestedSession(url, trust=TRUST, bearer_token=capability):
                pass
        assert b"CANARYcapability" not in remote_sink.received
