"""The server's delegation service: mint root capabilities, revoke them, and turn a presented token into a principal.

Threat model: minting exchanges a verified bearer for a capability, so it must never widen: the
rights are what the principal's scopes already allow within the policy (``rights``), the expiry
never passes the bearer's, and a caller that is itself a delegated capability cannot mint (it
would shed every attenuation) or revoke. The minted token is returned to its minter and nowhere
else; the audit sees its revocation id. Presentation verifies the whole chain against the root
key, refuses revoked or expired chains at the door, and yields a principal that carries the
chain, so every later layer (scopes, delegation checks, confirmation, quotas, audit) sees it.
The root's source (TEE-derived or NOT A TEE) is reported with every mint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from app.auth.principal import Principal
from app.capability_policy import CapabilityPolicy
from app.delegation.errors import reject
from app.delegation.keys import CapabilityRoot
from app.delegation.ledger import CapabilityLedger
from app.delegation.rights import DELEGATE_SCOPE, capability_expiry, grantable_rights
from app.delegation.token import mint, verify_presented

PRESENTATION_HINT = "send it as `Authorization: Bearer <capability>`; narrow it with `mcp-tee capability attenuate`"


class DelegationService:
    """Mints, revokes and verifies capabilities with one root key and one ledger.

    Args:
        root: The capability root key.
        policy: The capability policy (which tools exist and which scopes they need).
        ledger: Mint owners, revocations, call counts.
        clock: Wall-clock now (UTC).

    Example:
        >>> service = DelegationService(CapabilityRoot.per_process(), load_policy(), CapabilityLedger())
        >>> minted = service.mint(principal, tools=["query_database"], ttl_s=600)  # doctest: +SKIP
    """

    def __init__(self, root: CapabilityRoot, policy: CapabilityPolicy, ledger: CapabilityLedger,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.root = root
        self.ledger = ledger
        self._policy = policy
        self._clock = clock

    def status(self) -> dict[str, Any]:
        """What ``/healthz`` and ``attestation_status`` say about the root (never the private key)."""
        return {"capability_public_key": self.root.public_key_b64, "capability_root_source": self.root.source}

    def mint(self, principal: Principal, *, tools: Iterable[str] | None, ttl_s: float | None) -> dict[str, Any]:
        """A root capability for ``principal``: its delegable rights (optionally narrowed to ``tools``)."""
        if principal.delegation is not None:
            # Fail closed: minting from a capability would shed every attenuation on it.
            reject("a delegated capability cannot mint another; narrow it with `mcp-tee capability attenuate`")
        now = self._clock()
        bearer_expiry = (datetime.fromtimestamp(principal.expires_at, timezone.utc)
                         if principal.expires_at is not None else None)
        expires_at = capability_expiry(now, bearer_expiry, ttl_s)
        rights = grantable_rights(self._policy, principal.scopes, tools)
        token = mint(self.root, subject=principal.subject, scopes=principal.scopes - {DELEGATE_SCOPE},
                     rights=rights, expires_at=expires_at)
        revocation_id = verify_presented(token, self.root.public_key).revocation_ids[0]
        self.ledger.record_mint(revocation_id, principal.subject, expires_at, now)
        return {"capability": token, "revocation_id": revocation_id, "rights": sorted(rights),
                "expires_at": expires_at.isoformat(), **self.status(), "how_to_use": PRESENTATION_HINT}

    def revoke(self, principal: Principal, revocation_id: str) -> dict[str, Any]:
        """Revoke a root ``principal`` minted; every token cut from it is refused from now on."""
        if principal.delegation is not None:
            reject("a delegated capability cannot revoke; ask the principal that minted it")
        self.ledger.revoke(revocation_id, by=principal.subject)
        return {"revoked": True, "revocation_id": revocation_id}

    def principal(self, token: str) -> Principal:
        """The principal a presented ``biscuit~...`` token stands for, carrying its delegation chain.

        Raises:
            CapabilityRefused: The token does not verify, has expired or is revoked.
        """
        capability = verify_presented(token, self.root.public_key)
        if capability.expires_at <= self._clock():
            reject("the capability token has expired")
        if self.ledger.is_revoked(capability.revocation_ids):
            reject("the capability token, or one it was cut from, has been revoked")
        return Principal(subject=capability.root_subject, scopes=capability.scopes,
                         token_id=capability.revocation_ids[-1], expires_at=capability.expires_at.timestamp(),
                         delegation=capability)
