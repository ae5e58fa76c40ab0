"""Reads and writes sealed secrets in Azure Key Vault and fetches the sealing key's public half.

Threat model: the values handled here are sealed (JWE), so reading them
reveals nothing without the released key; still, errors carry only the
secret's name, the step and the exception type, never a response body. The
real Azure SDK clients are used unchanged against Azure and the emulator;
``connection_verify`` lets a caller trust a private CA (the emulator's
self-signed vault certificate) without turning verification off.
"""

from __future__ import annotations

from typing import Any, Iterable

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives.asymmetric import rsa

SEALED_CONTENT_TYPE = "application/jose"
RSA_KEY_TYPES = frozenset({"RSA", "RSA-HSM"})


class KeyVaultError(Exception):
    """A Key Vault call failed; the message names the step and secret, never a value."""


def _transport_options(connection_verify: str | bool | None) -> dict[str, Any]:
    return {} if connection_verify is None else {"connection_verify": connection_verify}


def read_sealed_secrets(vault_url: str, names: Iterable[str], credential: TokenCredential, *,
                        connection_verify: str | bool | None = None) -> dict[str, str]:
    """Return ``{name: sealed value}`` for each secret that exists; a missing secret is simply absent.

    Raises:
        KeyVaultError: authentication, transport or any other vault failure.
    """
    found: dict[str, str] = {}
    with SecretClient(vault_url, credential, **_transport_options(connection_verify)) as client:
        for name in names:
            try:
                value = client.get_secret(name).value
            except ResourceNotFoundError:
                continue
            except AzureError as exc:
                raise KeyVaultError(f"reading secret {name!r} failed ({type(exc).__name__})") from None
            if value is not None:
                found[name] = value
    return found


def write_sealed_secret(vault_url: str, name: str, sealed: str, credential: TokenCredential, *,
                        connection_verify: str | bool | None = None) -> str:
    """Store ``sealed`` as secret ``name``; return the new version's identifier."""
    try:
        with SecretClient(vault_url, credential, **_transport_options(connection_verify)) as client:
            return client.set_secret(name, sealed, content_type=SEALED_CONTENT_TYPE).id or ""
    except AzureError as exc:
        raise KeyVaultError(f"writing secret {name!r} failed ({type(exc).__name__})") from None


def fetch_public_key(vault_url: str, key_name: str, credential: TokenCredential, *,
                     connection_verify: str | bool | None = None) -> tuple[rsa.RSAPublicKey, str]:
    """Return the RSA public key of ``key_name`` and its key identifier (``kid``)."""
    try:
        with KeyClient(vault_url, credential, **_transport_options(connection_verify)) as client:
            jwk = client.get_key(key_name).key
    except AzureError as exc:
        raise KeyVaultError(f"reading key {key_name!r} failed ({type(exc).__name__})") from None
    if str(getattr(jwk.kty, "value", jwk.kty)) not in RSA_KEY_TYPES or not jwk.n or not jwk.e:
        raise KeyVaultError(f"key {key_name!r} is not an RSA key")
    numbers = rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big"))
    return numbers.public_key(), jwk.kid or key_name
