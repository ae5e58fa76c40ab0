"""Async client for the confidential-containers SKR sidecar (``/status``, ``/attest/maa``, ``/key/release``).

Threat model: the sidecar hands back the RSA private key that unseals every
baseline secret, so nothing from a release response may reach a log, an
exception message or ``repr``. Error messages carry the step, the HTTP status
and at most a truncated, single-line copy of the sidecar's ``error`` text.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from app.wire.runtime_data import b64url_decode

RSA_PRIVATE_JWK_FIELDS = ("n", "e", "d", "p", "q", "dp", "dq", "qi")
MAX_ERROR_TEXT = 200
DEFAULT_TIMEOUT_S = 10.0


class SidecarError(Exception):
    """A sidecar call failed.

    Args:
        step: ``status``, ``attest`` or ``key_release``.
        message: Secret-free description.
        status: The HTTP status, or None when the sidecar was unreachable.
    """

    def __init__(self, step: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.detail = message
        self.status = status

    @property
    def retryable(self) -> bool:
        """Unreachable or 5xx: the sidecar may still be starting; 4xx answers are final."""
        return self.status is None or self.status >= 500


def _error_text(response: httpx.Response) -> str:
    try:
        text = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        text = ""
    return " ".join(text.split())[:MAX_ERROR_TEXT]


def rsa_private_key_from_jwk(jwk: Mapping[str, Any]) -> rsa.RSAPrivateKey:
    """Build an RSA private key from a JWK carrying ``kty n e d p q dp dq qi``.

    Raises:
        ValueError: not an RSA private JWK (the message never includes key material).
    """
    if jwk.get("kty") not in ("RSA", "RSA-HSM") or not all(isinstance(jwk.get(f), str) for f in RSA_PRIVATE_JWK_FIELDS):
        raise ValueError("released key is not an RSA private JWK")
    try:
        n, e, d, p, q, dp, dq, qi = (int.from_bytes(b64url_decode(jwk[f]), "big") for f in RSA_PRIVATE_JWK_FIELDS)
        return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()
    except ValueError:
        raise ValueError("released key is not a consistent RSA private key") from None


class SidecarClient:
    """Talks to the SKR sidecar's HTTP API (the same code for the emulator and Azure).

    Args:
        base_url: The sidecar's URL, e.g. ``http://localhost:9000``.
        timeout: Per-request timeout in seconds.

    Example:
        >>> client = SidecarClient("http://localhost:9000")
        >>> token = await client.attest_maa("sharedeus.eus.attest.azure.net", b'{"nonce":"n"}')  # doctest: +SKIP
    """

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout

    async def _call(self, step: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
                response = await client.request(method, self._base_url + path, json=body)
        except httpx.HTTPError as exc:
            raise SidecarError(step, f"sidecar unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise SidecarError(step, f"sidecar answered {response.status_code}: {_error_text(response)}",
                               response.status_code)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise SidecarError(step, "sidecar answered with a non-object body", response.status_code)
        return payload

    async def status(self) -> str:
        """``GET /status``: return the sidecar's status message (``Status OK`` when ready)."""
        return str((await self._call("status", "GET", "/status")).get("message", ""))

    async def attest_maa(self, maa_endpoint: str, runtime_data: bytes) -> str:
        """``POST /attest/maa``: return an MAA token whose ``x-ms-runtime`` is ``runtime_data`` (JSON bytes)."""
        payload = await self._call("attest", "POST", "/attest/maa", {
            "maa_endpoint": maa_endpoint,
            "runtime_data": base64.b64encode(runtime_data).decode("ascii"),
        })
        token = payload.get("token")
        if not isinstance(token, str) or not token:
            raise SidecarError("attest", "sidecar returned no token", 200)
        return token

    async def release_key(self, maa_endpoint: str, akv_endpoint: str, kid: str,
                          access_token: str | None = None) -> dict[str, Any]:
        """``POST /key/release``: return the released key as a JWK dict (decoding the double encoding)."""
        body = {"maa_endpoint": maa_endpoint, "akv_endpoint": akv_endpoint, "kid": kid}
        if access_token:
            body["access_token"] = access_token
        payload = await self._call("key_release", "POST", "/key/release", body)
        try:
            jwk = json.loads(payload["key"])
        except (KeyError, TypeError, ValueError):
            raise SidecarError("key_release", "released key is not a JSON-encoded JWK string", 200) from None
        if not isinstance(jwk, dict):
            raise SidecarError("key_release", "released key is not a JWK object", 200)
        return jwk
