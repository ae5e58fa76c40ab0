"""SPKI pinning: a wrong key is refused inside the handshake, before one byte of HTTP reaches the peer."""

from __future__ import annotations

import socket
import ssl

import httpx
import httpx2
import pytest

from app.agent.errors import ChannelNotAttested
from app.agent.pinning import ChannelPin, ChannelPinMismatch, PinnedBearer, pin_refusal, pinned_async_client
from app.attestation.channel import TlsChannel
from tests.support.tls_recorder import RecordingTlsServer

BEARER = "CANARY-bearer-never-on-a-wrong-key"


def _recording_server():
    channel = TlsChannel.generate()
    with RecordingTlsServer(channel.ssl_context) as server:
        server.spki = channel.spki_sha256
        yield server


server_a = pytest.fixture(scope="module", name="server_a")(_recording_server)
server_b = pytest.fixture(scope="module", name="server_b")(_recording_server)


async def _get(pin: ChannelPin, url: str, **options) -> httpx2.Response:
    async with pinned_async_client(pin, **options) as client:
        return await client.get(url + "/mcp")


class TestPinnedKey:
    async def test_the_pinned_key_is_reached(self, server_a):
        response = await _get(ChannelPin(server_a.spki), server_a.url)
        assert response.status_code == 200
        assert server_a.connections_since(0)[-1].startswith(b"GET /mcp HTTP/1.1")

    async def test_another_key_gets_no_request_bytes(self, server_a, server_b):
        seen = len(server_b.connections_since(0))
        pin = ChannelPin(server_a.spki)
        with pytest.raises(httpx2.ConnectError) as refused:
            await _get(pin, server_b.url, bearer=PinnedBearer(pin, BEARER))
        assert isinstance(pin_refusal(refused.value), ChannelPinMismatch)
        assert pin.refused == [server_b.spki]
        assert server_b.connections_since(seen) == [b""]  # the handshake happened, the request never did

    def test_sync_clients_are_pinned_too(self, server_a, server_b):
        pin = ChannelPin(server_a.spki)
        with httpx.Client(verify=pin.ssl_context()) as client:
            assert client.get(server_a.url).status_code == 200
            seen = len(server_b.connections_since(0))
            with pytest.raises(httpx.ConnectError) as refused:
                client.get(server_b.url, headers={"Authorization": f"Bearer {BEARER}"})
        assert isinstance(pin_refusal(refused.value), ChannelPinMismatch)
        assert server_b.connections_since(seen) == [b""]

    def test_a_peer_without_tls_1_3_is_refused(self):
        pin = ChannelPin("a" * 64)
        assert pin.ssl_context().minimum_version == ssl.TLSVersion.TLSv1_3
        assert pin.ssl_context().verify_mode == ssl.CERT_NONE  # the pin authenticates, not a CA

    @pytest.mark.parametrize("bad", ["", "A" * 64, "a" * 63, "z" * 64])
    def test_malformed_pins_are_refused(self, bad):
        with pytest.raises(ValueError):
            ChannelPin(bad)


class TestCapture:
    async def test_the_first_key_is_captured_and_every_other_refused(self, server_a, server_b):
        pin = ChannelPin()
        async with pinned_async_client(pin) as client:
            assert (await client.get(server_a.url)).status_code == 200
            assert pin.spki_sha256 == server_a.spki and not pin.confirmed
            seen = len(server_b.connections_since(0))
            with pytest.raises(httpx2.ConnectError):
                await client.get(server_b.url)
        assert server_b.connections_since(seen) == [b""]

    async def test_confirm_accepts_only_the_captured_key(self, server_a, server_b):
        pin = ChannelPin()
        await _get(pin, server_a.url)
        with pytest.raises(ChannelNotAttested, match="not the key the attestation binds"):
            pin.confirm(server_b.spki)
        assert not pin.confirmed
        pin.confirm(server_a.spki)
        assert pin.confirmed

    @pytest.mark.parametrize("attested", [None, "", "x" * 64, 42])
    def test_a_token_without_a_tls_binding_confirms_nothing(self, attested):
        pin = ChannelPin()
        with pytest.raises(ChannelNotAttested, match="binds no TLS key"):
            pin.confirm(attested)

    def test_nothing_captured_confirms_nothing(self):
        with pytest.raises(ChannelNotAttested):
            ChannelPin().confirm("a" * 64)


class TestPinnedBearer:
    async def test_no_bearer_before_confirmation(self, server_a):
        pin = ChannelPin()
        seen = len(server_a.connections_since(0))
        with pytest.raises(ChannelNotAttested, match="not attested yet"):
            await _get(pin, server_a.url, bearer=PinnedBearer(pin, BEARER))
        assert server_a.connections_since(seen) == []  # refused before even connecting

    async def test_no_bearer_over_plain_http_even_once_confirmed(self, server_a):
        pin = ChannelPin(server_a.spki)
        seen = len(server_a.connections_since(0))
        plain = server_a.url.replace("https://", "http://")
        with pytest.raises(ChannelNotAttested, match="plain HTTP"):
            await _get(pin, plain, bearer=PinnedBearer(pin, BEARER))
        assert server_a.connections_since(seen) == []  # refused before even connecting

    async def test_bearer_after_confirmation(self, server_a):
        pin = ChannelPin()
        await _get(pin, server_a.url)
        pin.confirm(server_a.spki)
        await _get(pin, server_a.url, bearer=PinnedBearer(pin, BEARER))
        assert f"Authorization: Bearer {BEARER}".lower().encode() in server_a.connections_since(0)[-1].lower()
        assert BEARER not in repr(PinnedBearer(pin, BEARER))


def test_the_recorder_sees_plain_requests_as_bytes(server_a):
    """Sanity for the fixture: a raw TLS client's bytes are recorded verbatim."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server_a.port)) as raw, context.wrap_socket(raw) as tls:
        tls.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        tls.recv(1024)
    assert server_a.connections_since(0)[-1] == b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
