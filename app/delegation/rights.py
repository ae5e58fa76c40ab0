"""What a principal may delegate: the tools its scopes allow, within the capability policy, never more.

Threat model: minting must not be a way to gain rights. A root capability grants only tools the
policy declares and the minting principal's scopes already allow, minus the tools that manage
delegation itself or hand over credentials (a delegated token that could mint would escape every
attenuation). It expires no later than the bearer token it was exchanged for, and never later
than the mint's own cap. A principal that is itself a delegated capability cannot mint.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from app.capability_policy import CapabilityPolicy
from app.delegation.errors import reject

# Tools no capability may carry: delegation management, and credentials bound to the user's own session.
NON_DELEGABLE_TOOLS = frozenset({"mint_capability", "revoke_capability", "provide_session_credentials"})
DELEGATE_SCOPE = "mcp:delegate"
MAX_CAPABILITY_TTL_S = 24 * 3600


def grantable_rights(policy: CapabilityPolicy, scopes: frozenset[str], requested: Iterable[str] | None = None) -> frozenset[str]:
    """Tools the policy declares whose scopes ``scopes`` hold, minus non-delegable ones; narrowed to ``requested``.

    Raises:
        CapabilityRefused: ``requested`` names a tool the principal cannot delegate.
    """
    allowed = frozenset(name for name, tool in policy.tools.items()
                        if tool.scopes <= scopes and name not in NON_DELEGABLE_TOOLS)
    if requested is None:
        return allowed
    wanted = frozenset(requested)
    if not wanted <= allowed:
        # Fail closed: asking for more than you hold is refused, not silently trimmed.
        reject("you cannot delegate a tool your scopes do not allow, or one that is not delegable")
    return wanted


def capability_expiry(now: datetime, bearer_expires_at: datetime | None, ttl_s: float | None) -> datetime:
    """The root capability's expiry: at most ``ttl_s`` (capped) from now and never after the bearer's.

    Raises:
        CapabilityRefused: The bearer has no expiry we know, or it has already expired.
    """
    if bearer_expires_at is None:
        reject("a capability can be minted only from a bearer token with an expiry")
    ttl = min(ttl_s if ttl_s is not None else MAX_CAPABILITY_TTL_S, MAX_CAPABILITY_TTL_S)
    expiry = min(now + timedelta(seconds=ttl), bearer_expires_at).replace(microsecond=0)
    if expiry <= now:
        reject("the bearer token has expired; nothing can be delegated from it")
    return expiry
