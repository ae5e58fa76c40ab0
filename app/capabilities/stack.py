"""Compose the capability layers in their one fixed order: audit → scopes → confirmation → quotas → breakers."""

from __future__ import annotations

from fastmcp.server.middleware import Middleware

from app.capabilities.audit import AuditMiddleware
from app.capabilities.audit_log import AuditLog
from app.capabilities.breakers import BreakerMiddleware, Breakers
from app.capabilities.policy import CapabilityPolicy
from app.capabilities.principal import PrincipalProvider
from app.capabilities.quotas import QuotaMiddleware, RateLimiter, UpstreamSlots
from app.capabilities.redaction import Redactor
from app.capabilities.scopes import ScopeMiddleware


def build_capability_middleware(
    policy: CapabilityPolicy,
    *,
    audit: AuditLog,
    redactor: Redactor,
    breakers: Breakers,
    principal_provider: PrincipalProvider,
    quotas: RateLimiter | None = None,
    slots: UpstreamSlots | None = None,
    confirmation: Middleware | None = None,
) -> list[Middleware]:
    """The capability middleware, outermost first.

    Audit is outermost so that it records denials raised by every inner layer. Scopes run before
    anything else so an unauthorized caller cannot drain anyone's bucket or prompt the user.
    Confirmation runs before quotas and breakers: a prompt the user leaves open for minutes
    must hold neither an upstream's concurrency slot nor its half-open probe. Breakers run
    innermost so only calls that will really reach the upstream count toward its health.

    Example:
        >>> middleware = build_capability_middleware(policy, audit=log, redactor=redactor,
        ...     breakers=Breakers(policy.upstreams), principal_provider=PrincipalProvider(False))
        >>> server = FastMCP("mcp-tee", middleware=[*middleware, ConfirmationMiddleware(...)])
    """
    return [
        AuditMiddleware(audit, redactor, principal_provider),
        ScopeMiddleware(policy, principal_provider),
        *([confirmation] if confirmation is not None else []),
        QuotaMiddleware(policy, principal_provider, limiter=quotas, slots=slots),
        BreakerMiddleware(policy, breakers),
    ]
