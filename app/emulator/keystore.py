"""The emulator's key store: one exportable RSA key guarded by a Key Vault release policy.

NOT A TEE. Like Key Vault Premium's secure key release, the private key leaves
the store only when an attestation token from the policy's authority satisfies
the release policy; otherwise the caller learns which claim failed, never the
key. Key creation is create-only, as in ARM: a running store never swaps its
policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.wire.runtime_data import b64url
from app.emulator.release_policy_eval import PolicyInvalid, evaluate_release_policy
from policy.release_policy import encode_release_policy

KEY_SIZE = 2048


class ReleaseRefused(Exception):
    """The key store will not release the key; the message names the failed check, not the key."""


def _b64_int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def public_jwk(key: rsa.RSAPublicKey, kid: str) -> dict[str, Any]:
    """The public JWK Key Vault shows for an RSA-HSM key."""
    numbers = key.public_numbers()
    return {"kid": kid, "kty": "RSA-HSM", "key_ops": ["encrypt", "wrapKey"], "n": _b64_int(numbers.n),
            "e": _b64_int(numbers.e)}


def private_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    """The private JWK (``kty n e d p q dp dq qi``) that secure key release hands out."""
    numbers = key.private_numbers()
    return {**public_jwk(key.public_key(), kid), "kty": "RSA", "d": _b64_int(numbers.d), "p": _b64_int(numbers.p),
            "q": _b64_int(numbers.q), "dp": _b64_int(numbers.dmp1), "dq": _b64_int(numbers.dmq1),
            "qi": _b64_int(numbers.iqmp)}


def load_or_create_key(pem: bytes | None) -> rsa.RSAPrivateKey:
    """Load an unencrypted PEM RSA key, or generate a fresh one when ``pem`` is None."""
    if pem is None:
        return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the key file must hold an RSA private key")
    return key


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PEM of ``key`` so an emulator restart can keep opening earlier seals."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class KeyStore:
    """One named, exportable RSA key and its release policy.

    Args:
        name: The key name (the ``kid`` callers pass, optionally ``name/version``).
        key: The RSA private key.
        release_policy: The Key Vault release-policy JSON.
        version: The key version shown in key identifiers.
    """

    name: str
    key: rsa.RSAPrivateKey
    release_policy: Mapping[str, Any]
    version: str = "0" * 32
    _released: int = field(default=0, init=False)

    def key_id(self, vault_url: str) -> str:
        """The Key Vault key identifier URL."""
        return f"{vault_url.rstrip('/')}/keys/{self.name}/{self.version}"

    def matches(self, kid: str) -> bool:
        """Whether ``kid`` (``name`` or ``name/version``) names this key."""
        name, _, version = kid.partition("/")
        return name == self.name and version in ("", self.version)

    def key_bundle(self, vault_url: str) -> dict[str, Any]:
        """The ``GET /keys/{name}`` body: public JWK, attributes, release policy."""
        return {
            "key": public_jwk(self.key.public_key(), self.key_id(vault_url)),
            "attributes": {"enabled": True, "exportable": True, "recoveryLevel": "Recoverable+Purgeable"},
            "release_policy": {"contentType": "application/json; charset=utf-8",
                               "data": encode_release_policy(dict(self.release_policy)), "immutable": False},
        }

    def release(self, kid: str, claims: Mapping[str, Any], *, issuer: str, vault_url: str) -> str:
        """Return the private JWK as a JSON string if ``claims`` satisfy the policy; else raise.

        Raises:
            ReleaseRefused: unknown key, invalid policy, or a failing claim / authority.
        """
        if not self.matches(kid):
            raise ReleaseRefused(f"key {kid!r} not found")
        try:
            decision = evaluate_release_policy(self.release_policy, claims, issuer=issuer)
        except PolicyInvalid as exc:
            raise ReleaseRefused(f"release policy invalid: {exc}") from None
        if not decision.allowed:
            raise ReleaseRefused(f"release policy not satisfied: {decision.reason}")
        self._released += 1
        return json.dumps(private_jwk(self.key, self.key_id(vault_url)))

    @property
    def release_count(self) -> int:
        """How many times the key left the store (tests assert refusals keep it at zero)."""
        return self._released
