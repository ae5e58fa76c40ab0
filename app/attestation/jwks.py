"""Fetches and caches an attestation issuer's signing keys (JWKS with x5c certificates).

Threat model: whoever controls the key set controls which tokens verify. Keys
come only from a URL the caller configured, which must be https (or http on a
loopback address, for the local emulator). Fetches send no credentials (no
auth headers, no netrc, no proxies from the environment), follow no redirects,
and read a bounded body. An unknown ``kid`` triggers at most one refresh per
interval, so a flood of forged kids cannot turn the verifier into a fetch
amplifier.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from app.attestation.verifier_errors import SigningKeyUnavailable, UntrustedIssuerUrl

LOOPBACK_HOSTNAMES = frozenset({"localhost"})
MAX_JWKS_BYTES = 256 * 1024
MAX_CACHED_ISSUERS = 16
DEFAULT_REFRESH_INTERVAL_S = 30.0
DEFAULT_FETCH_TIMEOUT_S = 5.0


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTNAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_trusted_url(url: str, what: str) -> str:
    """Return ``url`` if it is https, or http on loopback, without userinfo; else raise."""
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname:
        raise UntrustedIssuerUrl(f"{what} URL must name a host and carry no credentials")
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return url
    raise UntrustedIssuerUrl(f"{what} URL must be https (http only on loopback)")


def _normalised(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url.strip())
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


def same_url(left: str, right: str) -> bool:
    """Compare two URLs by scheme, authority and path (case-insensitive host, trailing slash ignored)."""
    return _normalised(left) == _normalised(right)


def certs_url_for(issuer: str, jwks_url: str | None = None) -> str:
    """The JWKS URL to trust: the explicit one, else ``<issuer>/certs`` (MAA's layout)."""
    return require_trusted_url(jwks_url or issuer.rstrip("/") + "/certs", "JWKS")


def parse_jwks(body: bytes) -> dict[str, rsa.RSAPublicKey]:
    """Map ``kid`` to the RSA public key of each entry's first x5c certificate; skip anything else."""
    try:
        document = json.loads(body)
    except ValueError:
        raise SigningKeyUnavailable("JWKS is not JSON") from None
    keys: dict[str, rsa.RSAPublicKey] = {}
    for entry in document.get("keys", []) if isinstance(document, dict) else []:
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


class JwksCache:
    """Per-issuer signing-key cache, refreshed when a token names an unknown ``kid``.

    Args:
        refresh_interval_s: Minimum seconds between two fetches of the same JWKS.
        timeout_s: HTTP timeout per fetch.
        clock: Monotonic clock (injectable for tests).

    Example:
        >>> cache = JwksCache()
        >>> key = cache.key("https://sharedeus.eus.attest.azure.net/certs", kid)  # doctest: +SKIP
    """

    def __init__(self, *, refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S,
                 timeout_s: float = DEFAULT_FETCH_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._refresh_interval_s = refresh_interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._keys: dict[str, dict[str, rsa.RSAPublicKey]] = {}
        self._fetched_at: dict[str, float] = {}

    def _cached(self, url: str, kid: str) -> rsa.RSAPublicKey | None:
        return self._keys.get(url, {}).get(kid)

    def _may_fetch(self, url: str) -> bool:
        last = self._fetched_at.get(url)
        return last is None or self._clock() - last >= self._refresh_interval_s

    def _client_options(self) -> dict[str, Any]:
        # trust_env=False: no proxy settings, no netrc credentials leak to the issuer.
        return {"timeout": self._timeout_s, "follow_redirects": False, "trust_env": False}

    def _store(self, url: str, response: httpx.Response) -> None:
        if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
            raise SigningKeyUnavailable(f"JWKS fetch answered {response.status_code}")
        if url not in self._keys and len(self._keys) >= MAX_CACHED_ISSUERS:
            oldest = min(self._fetched_at, key=self._fetched_at.__getitem__)
            self._keys.pop(oldest, None)
            self._fetched_at.pop(oldest, None)
        self._keys[url] = parse_jwks(response.content)

    def _resolve(self, url: str, kid: str) -> rsa.RSAPublicKey:
        key = self._cached(url, kid)
        if key is None:
            raise SigningKeyUnavailable("no signing key with the token's kid at the configured issuer")
        return key

    def key(self, url: str, kid: str) -> rsa.RSAPublicKey:
        """Return the key for ``kid`` from ``url``'s JWKS, fetching when unknown (sync)."""
        require_trusted_url(url, "JWKS")
        if self._cached(url, kid) is None and self._may_fetch(url):
            self._fetched_at[url] = self._clock()
            try:
                with httpx.Client(**self._client_options()) as client:
                    self._store(url, client.get(url))
            except httpx.HTTPError:
                raise SigningKeyUnavailable("JWKS fetch failed") from None
        return self._resolve(url, kid)

    async def key_async(self, url: str, kid: str) -> rsa.RSAPublicKey:
        """Async twin of :meth:`key`."""
        require_trusted_url(url, "JWKS")
        if self._cached(url, kid) is None and self._may_fetch(url):
            self._fetched_at[url] = self._clock()
            try:
                async with httpx.AsyncClient(**self._client_options()) as client:
                    self._store(url, await client.get(url))
            except httpx.HTTPError:
                raise SigningKeyUnavailable("JWKS fetch failed") from None
        return self._resolve(url, kid)
