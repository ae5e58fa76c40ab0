"""The attested channel's server side: a TLS key born in this process and an SSL context that never leaves RAM.

Threat model: the host controls the confidential group's network, so TLS with
a key the host could hold proves nothing. The key is therefore generated here,
inside the TEE (ECDSA P-256), at every start; its certificate is self-signed
because no CA vouches for anything the attestation does not already prove; and
the SHA-256 of its SubjectPublicKeyInfo goes into the runtime data of every
MAA token, which is what lets a client pin this very key. The private key is
never written to disk, the environment, a log or an error: Python's
``load_cert_chain`` reads only paths, so the PEM goes through an anonymous
``memfd`` (RAM-backed, no name in any file system) that is closed as soon as
OpenSSL has read it. A restart means a new key, and clients must verify again.
Out of scope, by the TEE's own guarantee: reading the key out of encrypted
memory.
"""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass, field
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from app.wire.tls_binding import spki_sha256

CERTIFICATE_COMMON_NAME = "mcp-tee attested channel"
# The client pins the key, not a CA chain, so validity only has to outlast the process.
CERTIFICATE_VALIDITY = datetime.timedelta(days=397)
CLOCK_SKEW = datetime.timedelta(hours=1)
MEMFD_NAME = "mcp-tee-tls"


@dataclass(frozen=True, repr=False)
class TlsChannel:
    """This process's TLS identity: the certificate, its SPKI hash and a server SSL context holding the key.

    The private key object is dropped once OpenSSL holds it: only the context keeps it.

    Args:
        certificate_der: The self-signed certificate (DER).
        spki_sha256: Hex SHA-256 of its SubjectPublicKeyInfo, the value bound as ``tls_spki_sha256``.
        ssl_context: A TLS 1.3 server context with the certificate and key loaded.

    Example:
        >>> channel = TlsChannel.generate()
        >>> factory = channel.uvicorn_ssl_context_factory
        >>> config = uvicorn.Config(app, port=443, ssl_context_factory=factory)  # doctest: +SKIP
    """

    certificate_der: bytes
    spki_sha256: str
    ssl_context: ssl.SSLContext = field(compare=False)

    @classmethod
    def generate(cls) -> TlsChannel:
        """A fresh P-256 key and self-signed certificate (no host names: clients pin the key, not a name)."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _self_signed(key)
        certificate_pem = certificate.public_bytes(Encoding.PEM)
        key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        certificate_der = certificate.public_bytes(Encoding.DER)
        return cls(certificate_der, spki_sha256(certificate_der), _server_context(certificate_pem, key_pem))

    def uvicorn_ssl_context_factory(self, config: object,
                                    default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        """For ``uvicorn.Config(ssl_context_factory=...)``: serve this context, never one built from files."""
        return self.ssl_context

    def __repr__(self) -> str:
        return f"TlsChannel(spki_sha256={self.spki_sha256!r})"


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERTIFICATE_COMMON_NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CERTIFICATE_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def _server_context(certificate_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC)
    try:
        os.write(fd, certificate_pem + key_pem)
        # OpenSSL reads the anonymous RAM file through procfs; it is gone when the fd closes.
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return context
