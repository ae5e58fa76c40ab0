"""The server's TLS identity: born in process, bound by its SPKI hash, key never on disk."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from app.attestation.channel import TlsChannel
from app.wire.tls_binding import is_spki_hash, spki_sha256


class TestGenerate:
    def test_key_is_p256_and_the_hash_is_of_the_certificates_spki(self):
        channel = TlsChannel.generate()
        certificate = x509.load_der_x509_certificate(channel.certificate_der)
        assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
        assert certificate.public_key().curve.name == "secp256r1"
        assert channel.spki_sha256 == spki_sha256(channel.certificate_der)
        assert is_spki_hash(channel.spki_sha256)

    def test_every_start_is_a_new_key(self):
        assert TlsChannel.generate().spki_sha256 != TlsChannel.generate().spki_sha256

    def test_repr_names_the_hash_only(self):
        channel = TlsChannel.generate()
        assert repr(channel) == f"TlsChannel(spki_sha256={channel.spki_sha256!r})"


class TestKeyStaysInMemory:
    def test_no_file_descriptor_or_file_remains(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        before = set(os.listdir("/proc/self/fd"))
        TlsChannel.generate()
        leftover = {fd for fd in set(os.listdir("/proc/self/fd")) - before
                    if os.path.exists(f"/proc/self/fd/{fd}") and "memfd" in os.readlink(f"/proc/self/fd/{fd}")}
        assert leftover == set()
        assert list(Path(tmp_path).iterdir()) == []

    def test_uvicorn_gets_the_in_memory_context(self):
        import uvicorn

        channel = TlsChannel.generate()
        config = uvicorn.Config(lambda *a: None, ssl_context_factory=channel.uvicorn_ssl_context_factory)
        config.load()
        assert config.ssl is channel.ssl_context


class TestHandshake:
    def test_a_client_sees_the_bound_key(self):
        channel = TlsChannel.generate()
        listener = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            raw, _ = listener.accept()
            with channel.ssl_context.wrap_socket(raw, server_side=True) as tls:
                tls.recv(1)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(listener.getsockname()) as raw, client.wrap_socket(raw) as tls:
            assert spki_sha256(tls.getpeercert(binary_form=True)) == channel.spki_sha256
            assert tls.version() == "TLSv1.3"
        thread.join(timeout=5)
        listener.close()

    def test_tls_below_1_3_is_refused(self):
        assert TlsChannel.generate().ssl_context.minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize("value", ["", "AB" * 32, "a" * 63, None, 5, "g" * 64])
def test_malformed_spki_hashes_are_not_hashes(value):
    assert not is_spki_hash(value)
