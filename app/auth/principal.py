"""Who is calling: the verified principal that the auth layer attached to the current request.

Threat model: every capability decision keys on the principal, so it must come only from a token
the auth layer verified. With auth enabled, a request without a verified principal (or a call that
arrives outside any HTTP request) is denied: we fail closed. With auth disabled the server binds
loopback only, and every caller is the fixed local development principal. The principal never
carries the raw bearer token, so nothing downstream can forward it to an upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastmcp.server.dependencies import get_http_request

from app.errors import deny

# The ASGI scope key under which `auth.protect_app` stores the verified principal.
PRINCIPAL_SCOPE_KEY = "mcp_tee.principal"
LOCAL_SUBJECT = "local-dev"
DEFAULT_LOCAL_SCOPES = frozenset({"mcp:read", "mcp:write"})


@dataclass(frozen=True)
class Principal:
    """A verified caller.

    Args:
        subject: The JWT `sub` (or `local-dev` without auth).
        scopes: Granted scopes.
        token_id: The JWT `jti` when present, for audit correlation; never the token itself.
        expires_at: When the credential expires (epoch seconds), if known; a minted capability never outlives it.
        delegation: The verified capability chain (`app.delegation.token.VerifiedCapability`) when the
            caller presented a delegated capability rather than its own bearer token.
    """

    subject: str
    scopes: frozenset[str]
    token_id: str | None = None
    expires_at: float | None = None
    delegation: Any = field(default=None, compare=False)


def attach_principal(scope: dict[str, Any], principal: Principal) -> None:
    """Record a verified principal on an ASGI scope (called only by the auth layer)."""
    scope[PRINCIPAL_SCOPE_KEY] = principal


def _request_scope() -> dict[str, Any] | None:
    try:
        return get_http_request().scope
    except RuntimeError:
        return None


@dataclass(frozen=True)
class PrincipalProvider:
    """Resolves the principal of the current call.

    Args:
        auth_enabled: Whether bearer auth guards the HTTP app. When True, only a verified
            principal counts; when False every caller is the local development principal.
        local_scopes: Scopes of the local development principal.

    Example:
        >>> provider = PrincipalProvider(auth_enabled=False)
        >>> provider().subject
        'local-dev'
    """

    auth_enabled: bool
    local_scopes: frozenset[str] = DEFAULT_LOCAL_SCOPES

    def __call__(self) -> Principal:
        if not self.auth_enabled:
            return Principal(LOCAL_SUBJECT, self.local_scopes)
        scope = _request_scope()
        principal = scope.get(PRINCIPAL_SCOPE_KEY) if scope is not None else None
        if not isinstance(principal, Principal):
            # Fail closed: auth is on, yet nothing verified this caller.
            deny("authentication required", layer="auth")
        return principal

