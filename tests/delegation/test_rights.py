"""Minting rights: never more than the principal's scopes allow, never a delegation tool, never past the bearer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.capability_policy import load_policy
from app.delegation.errors import CapabilityRefused
from app.delegation.rights import MAX_CAPABILITY_TTL_S, NON_DELEGABLE_TOOLS, capability_expiry, grantable_rights
from tests.delegation.helpers import NOW

POLICY = load_policy()


class TestGrantableRights:
    def test_read_only_principal_gets_only_read_tools(self) -> None:
        rights = grantable_rights(POLICY, frozenset({"mcp:read", "mcp:delegate"}))
        assert "send_notification" not in rights and "query_database" in rights

    def test_delegation_and_credential_tools_are_never_granted(self) -> None:
        everything = POLICY.all_scopes | {"mcp:delegate"}
        assert not grantable_rights(POLICY, everything) & NON_DELEGABLE_TOOLS

    def test_read_only_principal_cannot_ask_for_a_write(self) -> None:
        with pytest.raises(CapabilityRefused, match="cannot delegate"):
            grantable_rights(POLICY, frozenset({"mcp:read"}), requested={"send_notification"})

    def test_undeclared_tool_cannot_be_requested(self) -> None:
        with pytest.raises(CapabilityRefused):
            grantable_rights(POLICY, POLICY.all_scopes, requested={"debug_shell"})

    def test_request_narrows(self) -> None:
        assert grantable_rights(POLICY, POLICY.all_scopes, requested={"query_database"}) == {"query_database"}


class TestCapabilityExpiry:
    def test_never_after_the_bearer(self) -> None:
        assert capability_expiry(NOW, NOW + timedelta(minutes=5), ttl_s=3600) == NOW + timedelta(minutes=5)

    def test_ttl_is_capped(self) -> None:
        assert capability_expiry(NOW, NOW + timedelta(days=30), ttl_s=10**7) == NOW + timedelta(seconds=MAX_CAPABILITY_TTL_S)

    @pytest.mark.parametrize("bearer", [None, NOW - timedelta(seconds=1)])
    def test_no_or_expired_bearer_refused(self, bearer) -> None:
        with pytest.raises(CapabilityRefused):
            capability_expiry(NOW, bearer, ttl_s=60)
