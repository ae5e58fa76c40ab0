"""The sealed-secret envelope: JWE compact, RSA-OAEP-256 key wrap, A256GCM content encryption.

Threat model: a sealed secret sits in Key Vault (and in operators' shells) where
anyone with read access can copy it. Only the holder of the RSA private key,
which Key Vault releases to an attested container alone, may recover the
plaintext. Each seal draws a fresh AES-256-GCM content key, so any length is
sealable and ciphertexts never repeat. Tampering with any part of the token
(header, wrapped key, IV, ciphertext, tag) makes unsealing fail. Errors name
the failing step and never carry plaintext or key material.

The format is standard JWE compact serialization (RFC 7516), produced and
checked by joserfc; no cryptography is composed here by hand.
"""

from __future__ import annotations

import base64
import json
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

KEY_WRAP_ALGORITHM = "RSA-OAEP-256"
CONTENT_ALGORITHM = "A256GCM"
# joserfc's default registry refuses RSA-OAEP-256 as "not recommended"; allow exactly our pair.
_REGISTRY = jwe.JWERegistry(algorithms=[KEY_WRAP_ALGORITHM, CONTENT_ALGORITHM])
# Bounded, but well above Key Vault's 25 KiB secret limit (joserfc's default caps at 64 KiB).
MAX_SEALED_CHARS = 1024 * 1024
_REGISTRY.max_ciphertext_length = MAX_SEALED_CHARS
MIN_RSA_BITS = 2048


class SealingError(Exception):
    """Sealing or unsealing failed; the message names the step, never the secret or the key."""


def _reject(reason: str) -> NoReturn:
    # `from None` on purpose: library exceptions may quote bytes of the token or key.
    raise SealingError(reason) from None


def _as_jwk(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> RSAKey:
    if not isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        _reject("sealing key must be an RSA key")
    if key.key_size < MIN_RSA_BITS:
        _reject(f"sealing key must have at least {MIN_RSA_BITS} bits")
    return RSAKey.import_key(key)


def seal(plaintext: bytes, public_key: rsa.RSAPublicKey, *, kid: str | None = None) -> str:
    """Seal ``plaintext`` to ``public_key`` and return the JWE compact string.

    Args:
        plaintext: The secret, any length (including empty).
        public_key: The public half of the exportable RSA-HSM key.
        kid: Optional key identifier (key name or name/version) written to the
            protected header so a mismatched key gives a clear error.
    """
    header: dict[str, str] = {"alg": KEY_WRAP_ALGORITHM, "enc": CONTENT_ALGORITHM}
    if kid:
        header["kid"] = kid
    try:
        return jwe.encrypt_compact(header, plaintext, _as_jwk(public_key), registry=_REGISTRY)
    except JoseError as exc:
        _reject(f"sealing failed ({type(exc).__name__})")


def sealed_kid(token: str) -> str | None:
    """Return the ``kid`` from a sealed token's protected header, if any (no decryption)."""
    try:
        kid = _header_of(token).get("kid")
    except SealingError:
        return None
    return kid if isinstance(kid, str) else None


def _header_of(token: str) -> dict:
    try:
        head = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError):
        _reject("sealed value is not a JWE compact token")
    if not isinstance(header, dict):
        _reject("sealed value is not a JWE compact token")
    return header


def unseal(token: str, private_key: rsa.RSAPrivateKey) -> bytes:
    """Open a JWE compact token made by :func:`seal`.

    Raises:
        SealingError: the token is malformed, uses other algorithms, was sealed
            to a different key, or was tampered with.
    """
    if not isinstance(token, str) or token.count(".") != 4 or len(token) > MAX_SEALED_CHARS:
        _reject("sealed value is not a JWE compact token")
    header = _header_of(token)
    if header.get("alg") != KEY_WRAP_ALGORITHM or header.get("enc") != CONTENT_ALGORITHM:
        _reject(f"sealed value must use alg {KEY_WRAP_ALGORITHM} and enc {CONTENT_ALGORITHM}")
    try:
        return jwe.decrypt_compact(token, _as_jwk(private_key), registry=_REGISTRY).plaintext or b""
    except Exception:  # Fail closed: any library failure is a refusal, reported without its text.
        hint = f" (sealed for kid {header['kid'][:64]!r})" if isinstance(header.get("kid"), str) else ""
        _reject(f"unsealing failed: wrong key or tampered ciphertext{hint}")
