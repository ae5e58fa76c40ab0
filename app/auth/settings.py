"""Inbound auth settings: which issuer's tokens the server accepts, and for which audience.

Validated here, once, so that a half-configured auth never silently becomes no auth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.auth.dev_issuer import DEFAULT_AUDIENCE, DEV_ISSUER_ID, DevIssuer
from app.urls import UntrustedUrl, require_https_or_loopback

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})
METADATA_PATH = "/.well-known/oauth-protected-resource"


class AuthConfigError(ValueError):
    """The auth configuration is incomplete or unsafe; the server must not start."""


@dataclass(frozen=True)
class AuthSettings:
    """Where tokens come from and whom they must be for.

    Args:
        issuer: Expected `iss`.
        jwks_url: The issuer's JWKS (https, http on loopback, or a `file://` path for the dev issuer).
        audience: This server's canonical URL, for example `https://mcp.example.com/mcp`; the `aud`.
        algorithms: Allowed signature algorithms, a subset of RS256/ES256.
        leeway: Clock skew tolerated on `exp`/`nbf`, in seconds.
        scopes_supported: Scopes advertised in the metadata; a token with none of them gets 403.

    Example:
        >>> settings = AuthSettings("https://login.example.com/", "https://login.example.com/jwks",
        ...                         "https://mcp.example.com/mcp")
    """

    issuer: str
    jwks_url: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: int = 30
    scopes_supported: frozenset[str] = field(default_factory=lambda: frozenset({"mcp:read", "mcp:write"}))

    def __post_init__(self) -> None:
        if not set(self.algorithms) <= ALLOWED_ALGORITHMS or not self.algorithms:
            raise AuthConfigError(f"algorithms must be a non-empty subset of {sorted(ALLOWED_ALGORITHMS)}")
        try:
            require_https_or_loopback(self.jwks_url, "jwks_url", allow_file=True)
        except UntrustedUrl:
            raise AuthConfigError("jwks_url must be https (http only on loopback, file:// for the dev issuer)") from None
        if not self.issuer or urlsplit(self.audience).scheme not in {"http", "https"}:
            raise AuthConfigError("issuer must be set and audience must be the server's canonical URL")

    @property
    def metadata_url(self) -> str:
        """Where the protected-resource metadata lives (pointed at by WWW-Authenticate)."""
        parts = urlsplit(self.audience)
        return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}"

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 protected-resource metadata document."""
        return {"resource": self.audience, "authorization_servers": [self.issuer],
                "scopes_supported": sorted(self.scopes_supported), "bearer_methods_supported": ["header"]}

    @classmethod
    def from_env(cls, environ: Mapping[str, str], dev_state_dir: Path | None = None) -> AuthSettings | None:
        """Settings from `MCP_AUTH_*`; None when `MCP_AUTH_ISSUER` is unset (auth disabled).

        `MCP_AUTH_ISSUER=dev` trusts the local dev issuer's key pair (created if missing).
        """
        issuer = environ.get("MCP_AUTH_ISSUER", "").strip()
        if not issuer:
            return None
        audience = environ.get("MCP_AUTH_AUDIENCE", "").strip()
        if issuer == "dev":
            dev = DevIssuer(dev_state_dir) if dev_state_dir else DevIssuer()
            dev.ensure()
            return cls(DEV_ISSUER_ID, dev.jwks_path.resolve().as_uri(), audience or DEFAULT_AUDIENCE)
        jwks_url = environ.get("MCP_AUTH_JWKS_URL", "").strip()
        if not jwks_url or not audience:
            # Fail closed: half-configured auth must not silently become no auth.
            raise AuthConfigError("MCP_AUTH_ISSUER is set, so MCP_AUTH_JWKS_URL and MCP_AUTH_AUDIENCE are required")
        return cls(issuer, jwks_url, audience)
