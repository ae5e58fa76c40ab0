"""Per-session X25519 keys and HPKE sealing of layer-2 credentials to an attested session.

Threat model: the agent sends a user's scoped tokens only after verifying an
attestation whose runtime data binds this session's public key. Sealing to
that key with HPKE (RFC 9180, base mode, X25519 / HKDF-SHA256 / AES-256-GCM,
as shipped by ``cryptography``) means only the attested process, which holds
the private half in memory, can open them. The HPKE ``info`` binds the
session public key, so a ciphertext cannot be replayed into another session.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from app.wire.runtime_data import b64url, b64url_decode

SESSION_INFO_LABEL = b"mcp-tee session credentials v1"
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
MAX_SEALED_CHARS = 64 * 1024


class SessionSealError(Exception):
    """Sealing to, or opening from, a session key failed (no plaintext in the message)."""


def _info(session_pub_raw: bytes) -> bytes:
    return SESSION_INFO_LABEL + b"|" + session_pub_raw


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal_to_session(session_pub_b64url: str, plaintext: bytes) -> str:
    """Seal ``plaintext`` to a session public key (base64url raw X25519); return base64url ciphertext."""
    try:
        raw = b64url_decode(session_pub_b64url)
        public_key = X25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SessionSealError("session public key is not a base64url X25519 key") from None
    return b64url(_SUITE.encrypt(plaintext, public_key, info=_info(raw)))


class SessionKey:
    """An ephemeral X25519 key pair for one MCP session; the private half never leaves memory.

    Example:
        >>> key = SessionKey.generate()
        >>> key.open(seal_to_session(key.public_b64url, b"token"))
        b'token'
    """

    def __init__(self, private_key: X25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_raw = _raw_public(private_key.public_key())

    @classmethod
    def generate(cls) -> SessionKey:
        """A fresh random session key."""
        return cls(X25519PrivateKey.generate())

    @property
    def public_b64url(self) -> str:
        """The public key as unpadded base64url of its 32 raw bytes (``session_pub``)."""
        return b64url(self._public_raw)

    def open(self, sealed: str) -> bytes:
        """Open a value made by :func:`seal_to_session` for this key; raise :class:`SessionSealError` otherwise."""
        if not isinstance(sealed, str) or len(sealed) > MAX_SEALED_CHARS:
            raise SessionSealError("sealed value is not a bounded string")
        try:
            return _SUITE.decrypt(b64url_decode(sealed), self._private_key, info=_info(self._public_raw))
        except (InvalidTag, ValueError):
            raise SessionSealError("sealed value does not open with this session key") from None

    def __repr__(self) -> str:
        return f"SessionKey(public={self.public_b64url})"
