"""The agent's capability checks: the key comes only from signed runtime data and tokens must chain to it."""

from __future__ import annotations

import pytest

from app.agent.delegation import CapabilityNotAttested, check_capability_key, chain_to, minted_from
from app.agent.report import VerificationReport
from app.delegation.keys import CapabilityRoot
from tests.delegation.helpers import minted

ROOT = CapabilityRoot.per_process()
KEY = ROOT.public_key_b64


def run(signed, advertised, presented=None) -> VerificationReport:
    report = VerificationReport(url="http://127.0.0.1/mcp")
    check_capability_key(report, signed, advertised, presented)
    return report


class TestCapabilityKeyCheck:
    def test_signed_and_advertised_key_with_a_chained_token_passes(self) -> None:
        report = run({"capability_pub": KEY}, KEY, minted(ROOT))
        assert report.verified and report.capability_public_key == KEY

    @pytest.mark.parametrize("signed, advertised, presented, reason", [
        ({}, KEY, "token", "binds no capability key"),
        ({"capability_pub": KEY}, CapabilityRoot.per_process().public_key_b64, None, "advertises"),
        ({"capability_pub": KEY}, KEY, "foreign", "does not chain"),
    ], ids=["token-without-key", "other-key-advertised", "foreign-chain"])
    def test_refusals(self, signed, advertised, presented, reason) -> None:
        token = {"token": minted(ROOT), "foreign": minted(CapabilityRoot.per_process())}.get(presented)
        report = run(signed, advertised, token)
        assert not report.verified and reason in report.first_failure.detail

    def test_server_without_delegation_passes_when_nothing_is_presented(self) -> None:
        assert run({}, None).checks == []


class TestMintAnswer:
    def test_token_of_another_root_is_refused(self) -> None:
        with pytest.raises(CapabilityNotAttested):
            minted_from({"capability": minted(CapabilityRoot.per_process()), "revocation_id": "ab"}, KEY)

    def test_repr_hides_the_token(self) -> None:
        token = minted(ROOT)
        capability = minted_from({"capability": token, "revocation_id": "ab" * 32, "rights": ["query_database"]}, KEY)
        assert token[10:40] not in repr(capability)
        chain_to(capability.token, KEY)


class TestChainTo:
    def test_no_attested_key_is_a_refusal(self) -> None:
        with pytest.raises(CapabilityNotAttested):
            chain_to(minted(ROOT), None)
