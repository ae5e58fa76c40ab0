"""The delegation service: minting never widens, delegated callers cannot mint or revoke, presentation fails closed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.auth.principal import Principal
from app.capability_policy import load_policy
from app.delegation.errors import CapabilityRefused
from app.delegation.keys import CapabilityRoot
from app.delegation.ledger import CapabilityLedger
from app.delegation.rights import DELEGATE_SCOPE
from app.delegation.service import DelegationService
from tests.delegation.helpers import NOW, Clock

ALICE = Principal("alice", frozenset({"mcp:read", "mcp:write", DELEGATE_SCOPE}), expires_at=(NOW + timedelta(hours=1)).timestamp())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock) -> DelegationService:
    return DelegationService(CapabilityRoot.per_process(), load_policy(), CapabilityLedger(), clock=clock)


class TestMint:
    def test_presented_token_becomes_a_principal_carrying_the_chain(self, service) -> None:
        minted = service.mint(ALICE, tools=None, ttl_s=600)
        principal = service.principal(minted["capability"])
        assert principal.subject == "alice" and principal.delegation.revocation_ids[0] == minted["revocation_id"]
        assert DELEGATE_SCOPE not in principal.scopes  # a capability can never reach the delegation tools
        assert principal.token_id == minted["revocation_id"]
        assert "NOT A TEE" in minted["capability_root_source"]

    def test_expiry_never_passes_the_bearer(self, service) -> None:
        minted = service.mint(ALICE, tools=None, ttl_s=86400)
        assert minted["expires_at"] == (NOW + timedelta(hours=1)).isoformat()

    def test_a_delegated_principal_cannot_mint_or_revoke(self, service) -> None:
        minted = service.mint(ALICE, tools=["query_database"], ttl_s=600)
        delegated = service.principal(minted["capability"])
        with pytest.raises(CapabilityRefused, match="cannot mint"):
            service.mint(delegated, tools=None, ttl_s=60)
        with pytest.raises(CapabilityRefused, match="cannot revoke"):
            service.revoke(delegated, minted["revocation_id"])

    @pytest.mark.parametrize("scopes, tools", [
        (frozenset({DELEGATE_SCOPE}), None),  # no delegable tool needs only the delegate scope
        (ALICE.scopes, []),
    ])
    def test_nothing_to_delegate_mints_nothing(self, service, scopes, tools) -> None:
        bearer = Principal("alice", scopes, expires_at=ALICE.expires_at)
        with pytest.raises(CapabilityRefused, match="nothing to delegate"):
            service.mint(bearer, tools=tools, ttl_s=600)
        assert len(service.ledger) == 0

    def test_bearer_without_expiry_cannot_mint(self, service) -> None:
        with pytest.raises(CapabilityRefused, match="expiry"):
            service.mint(Principal("local-dev", ALICE.scopes), tools=None, ttl_s=60)


class TestPresentation:
    def test_expired_capability_refused_at_the_door(self, service, clock) -> None:
        minted = service.mint(ALICE, tools=None, ttl_s=60)
        clock.advance(61)
        with pytest.raises(CapabilityRefused, match="expired"):
            service.principal(minted["capability"])

    def test_revoked_capability_refused_at_the_door(self, service) -> None:
        minted = service.mint(ALICE, tools=None, ttl_s=60)
        service.revoke(ALICE, minted["revocation_id"])
        with pytest.raises(CapabilityRefused, match="revoked"):
            service.principal(minted["capability"])

    def test_status_shows_the_public_key_only(self, service) -> None:
        status = service.status()
        assert set(status) == {"capability_public_key", "capability_root_source"}
