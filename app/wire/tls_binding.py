"""The attested channel's wire facts: the TLS key hash the attestation carries, the route, the MCP names.

The server binds ``tls_spki_sha256`` (lowercase hex SHA-256 of the DER
SubjectPublicKeyInfo of its TLS certificate) into the runtime data of every
MAA token; the agent computes the same hash from the certificate its own TLS
handshake received and pins it. Hashing the public key, not the whole
certificate, means a re-issued certificate for the same key still matches and
a new key never does.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

TLS_SPKI_FIELD = "tls_spki_sha256"
SPKI_HASH_HEX_LENGTH = 64
# The unauthenticated route that answers `?nonce=` with the MAA token and its runtime JSON.
ATTESTATION_ROUTE = "/.well-known/mcp-attestation"
# Our MCP extension (SEP-2133 reverse-DNS namespace) and the version of the binding rules above.
CHANNEL_EXTENSION = "dev.mcp-tee/attested-channel"
BINDING_VERSION = "tls-spki-sha256/1"
# On MCP 2026-07-28 (no sessions) a client names its attested channel in each request's `_meta`.
CHANNEL_META_KEY = "dev.mcp-tee/channel"


def spki_sha256(certificate_der: bytes) -> str:
    """Lowercase hex SHA-256 of the certificate's DER SubjectPublicKeyInfo; ``ValueError`` if it does not parse."""
    certificate = x509.load_der_x509_certificate(certificate_der)
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def is_spki_hash(value: object) -> bool:
    """True for a well-formed ``tls_spki_sha256`` value (64 lowercase hex characters)."""
    return (isinstance(value, str) and len(value) == SPKI_HASH_HEX_LENGTH
            and all(c in "0123456789abcdef" for c in value))
