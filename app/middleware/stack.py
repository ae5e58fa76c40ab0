"""Compose every layer in its one fixed order; production and the tests both build the chain here."""

from __future__ import annotations

from collections.abc import Iterable

from fastmcp.server.middleware import Middleware

from app.audit.log import AuditLog
from app.audit.redaction import Redactor
from app.auth.principal import PrincipalProvider
from app.capability_policy import CapabilityPolicy
from app.delegation.authorize import CapabilityGate
from app.middleware.audit import AuditMiddleware
from app.middleware.audit_backpressure import AuditBackpressureMiddleware
from app.middleware.breakers import BreakerMiddleware, Breakers
from app.middleware.confirmation import DEFAULT_CONFIRMATION_TIMEOUT_S, ConfirmationMiddleware
from app.middleware.delegation import DelegationMiddleware
from app.middleware.dispatch import LayerPipeline
from app.middleware.error_handling import ErrorBoundaryMiddleware
from app.middleware.quotas import QuotaMiddleware, RateLimiter, UpstreamSlots
from app.middleware.refusals import RefusalBudgetMiddleware, RefusalLedger
from app.middleware.scopes import ScopeMiddleware
from app.middleware.telemetry import TelemetryMiddleware
from app.middleware.untrusted import UntrustedOutputMiddleware
from app.telemetry.instruments import instruments
from app.tools.spec import ToolSpec


def build_middleware(
    policy: CapabilityPolicy,
    specs: Iterable[ToolSpec],
    *,
    audit: AuditLog,
    redactor: Redactor,
    breakers: Breakers,
    principals: PrincipalProvider,
    quotas: RateLimiter | None = None,
    slots: UpstreamSlots | None = None,
    refusals: RefusalLedger | None = None,
    confirmation_timeout_s: float = DEFAULT_CONFIRMATION_TIMEOUT_S,
    delegation: CapabilityGate | None = None,
    telemetry: bool = False,
) -> list[Middleware]:
    """The whole chain, outermost first: error boundary → telemetry → audit backpressure → audit → refusal
    budget → scopes → delegation → confirmation → quotas → breakers → untrusted-output marking → tool.

    The error boundary is outermost so nothing leaves as a traceback. Telemetry comes next so it
    sees every outcome, refusals for audit backpressure included. The backpressure gate refuses
    calls whose record could not be kept before anything else runs (its refusal summary is written
    when the log closes). Audit comes next so that it
    records denials raised by every inner layer. The refusal budget charges every denial from the
    layers inside it, undeclared tools included, and refuses a caller whose budget is spent before
    any of them runs. Scopes run before anything else so an unauthorized
    caller cannot drain anyone's bucket or prompt the user. A delegated capability's own checks come
    right after the scopes, for the same reason, and never replace confirmation. Confirmation runs before quotas and
    breakers: a prompt the user leaves open for minutes must hold neither an upstream's concurrency
    slot nor its half-open probe. Breakers run innermost of the policy layers, so only calls that
    really reach the upstream count toward its health. Untrusted marking sits next to the tool, so
    every layer above sees the result exactly as the caller will.

    The telemetry layer is there only when `telemetry` is on (an exporter is configured): with
    nothing to export, its attributes and metrics would be computed for nobody on every call. The
    layers run as one `LayerPipeline`, so FastMCP dispatches one middleware, not eleven.

    Example:
        >>> middleware = build_middleware(policy, TOOL_SPECS, audit=log, redactor=redactor,
        ...     breakers=Breakers(policy.upstreams), principals=PrincipalProvider(auth_enabled=False))
        >>> server = FastMCP("mcp-tee", middleware=middleware)
    """
    specs = tuple(specs)
    confirmed = {name for name, tool in policy.tools.items() if tool.confirm}
    previews = {spec.name: spec.confirmation_preview for spec in specs if spec.confirmation_preview is not None}
    untrusted = frozenset(spec.name for spec in specs if spec.untrusted_output)
    return [LayerPipeline([
        ErrorBoundaryMiddleware(untrusted, redactor),
        *([TelemetryMiddleware(instruments(), principals, frozenset(policy.tools))] if telemetry else []),
        AuditBackpressureMiddleware(audit, principals),
        AuditMiddleware(audit, redactor, principals,
                        summaries={spec.name: spec.audit_summary for spec in specs if spec.audit_summary}),
        RefusalBudgetMiddleware(refusals or RefusalLedger(policy.refusals), principals),
        ScopeMiddleware(policy, principals),
        *([DelegationMiddleware(delegation, principals)] if delegation is not None else []),
        ConfirmationMiddleware(confirmed, previews=previews, timeout_s=confirmation_timeout_s, principals=principals),
        QuotaMiddleware(policy, principals, limiter=quotas, slots=slots),
        BreakerMiddleware(policy, breakers),
        UntrustedOutputMiddleware(untrusted),
    ])]
