"""MAA signing keys: the issuer's `/certs` x5c certificates, through the shared JWKS cache.

Threat model: see `app/jwks.py` (where keys may come from and how often) and `app/urls.py` (https,
or http only on loopback for the emulator). This module adds MAA's shape: an entry counts only if it
is an RSA key whose first x5c certificate parses, and every failure surfaces as the verifier's named
`AttestationError`, never as a transport exception.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from app.attestation.errors import SigningKeyUnavailable, UntrustedIssuerUrl
from app.jwks import JwksCache, KeyUnavailable
from app.urls import UntrustedUrl, require_https_or_loopback


def parse_maa_jwks(document: Mapping[str, Any]) -> dict[str, rsa.RSAPublicKey]:
    """Map `kid` to the RSA public key of each entry's first x5c certificate; skip anything else."""
    keys: dict[str, rsa.RSAPublicKey] = {}
    for entry in document.get("keys", []) if isinstance(document.get("keys"), list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
            continue
        chain = entry.get("x5c")
        if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
            continue
        try:
            public_key = x509.load_der_x509_certificate(base64.b64decode(chain[0])).public_key()
        except ValueError:
            continue
        if isinstance(public_key, rsa.RSAPublicKey):
            keys[entry["kid"]] = public_key
    return keys


def maa_jwks_cache(**options: Any) -> JwksCache:
    """A JWKS cache that understands MAA's x5c key sets (options as for `JwksCache`)."""
    return JwksCache(parse_maa_jwks, **options)


def require_trusted_url(url: str, what: str) -> str:
    """`url` if it is https (http only on loopback) without credentials; else `UntrustedIssuerUrl`."""
    try:
        return require_https_or_loopback(url, what)
    except UntrustedUrl as exc:
        raise UntrustedIssuerUrl(str(exc)) from None


def certs_url_for(issuer: str, jwks_url: str | None = None) -> str:
    """The JWKS URL to trust: the explicit one, else `<issuer>/certs` (MAA's layout)."""
    return require_trusted_url(jwks_url or issuer.rstrip("/") + "/certs", "JWKS")


def signing_key(cache: JwksCache, certs_url: str, kid: str) -> rsa.RSAPublicKey:
    """The issuer's key for `kid` (blocking fetch when unknown)."""
    require_trusted_url(certs_url, "JWKS")
    try:
        return cache.key(certs_url, kid)
    except KeyUnavailable as exc:
        raise SigningKeyUnavailable(str(exc)) from None


async def signing_key_async(cache: JwksCache, certs_url: str, kid: str) -> rsa.RSAPublicKey:
    """Async twin of `signing_key`."""
    require_trusted_url(certs_url, "JWKS")
    try:
        return await cache.key_async(certs_url, kid)
    except KeyUnavailable as exc:
        raise SigningKeyUnavailable(str(exc)) from None
