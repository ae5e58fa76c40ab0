"""Signing the audit chain: the Ed25519 key that signs checkpoints, and the exact bytes it signs.

Threat model: a checkpoint is what stops whoever can write the log from rebuilding a consistent
chain after an edit, so only this process (in TEE mode, attestation-released material) holds the
key, and the signed bytes are a canonical serialisation that `audit verify` recomputes exactly.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def checkpoint_message(unsigned: dict[str, Any]) -> bytes:
    """The exact bytes a checkpoint signs: every field but `sig`, canonically serialised."""
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b"mcp-tee-audit-checkpoint\n" + canonical.encode()


def public_key_b64(key: Ed25519PublicKey) -> str:
    """Standard base64 of the raw 32-byte public key (what `audit verify --public-key` takes)."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class AuditSigner:
    """Signs checkpoints.

    Args:
        private_key: A per-process key outside a TEE, or the attestation-derived key inside one.

    Example:
        >>> signer = AuditSigner(Ed25519PrivateKey.generate())
        >>> signer.public_key_b64()  # publish in attestation_status
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public_key_b64 = public_key_b64(private_key.public_key())

    def sign(self, message: bytes) -> str:
        """Standard base64 Ed25519 signature of `message`."""
        return base64.b64encode(self._key.sign(message)).decode()

    def public_key_b64(self) -> str:
        """The public half, for `attestation_status` and the verifier."""
        return self._public_key_b64
