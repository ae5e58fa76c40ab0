"""The emulator's Key Vault release-policy evaluator: a table of grants and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from app.emulator.release_policy_eval import PolicyInvalid, evaluate_release_policy
from policy.release_policy import build_release_policy

MAA = "https://sharedeus.eus.attest.azure.net"
HOSTDATA = "ab" * 32
GOOD_CLAIMS: dict[str, Any] = {
    "x-ms-sevsnpvm-hostdata": HOSTDATA,
    "x-ms-compliance-status": "azure-compliant-uvm",
    "x-ms-sevsnpvm-is-debuggable": False,
    "x-ms-sevsnpvm-vmpl": 0,
    "x-ms-sevsnpvm-guestsvn": 3,
}


def _policy(*conditions: dict[str, Any], kind: str = "allOf", authority: str = MAA) -> dict[str, Any]:
    return {"version": "1.0.0", "anyOf": [{"authority": authority, kind: list(conditions)}]}


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = {**GOOD_CLAIMS, **{k.replace("_", "-"): v for k, v in overrides.items()}}
    return {k: v for k, v in claims.items() if v is not None}


# (id, policy, claims, allowed)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("generated policy grants good claims", build_release_policy(MAA, HOSTDATA), _claims(), True),
    ("generated policy refuses other hostdata", build_release_policy(MAA, HOSTDATA),
     {**_claims(), "x-ms-sevsnpvm-hostdata": "cd" * 32}, False),
    ("generated policy refuses debuggable", build_release_policy(MAA, HOSTDATA),
     {**_claims(), "x-ms-sevsnpvm-is-debuggable": True}, False),
    ("generated policy refuses vmpl 1", build_release_policy(MAA, HOSTDATA), {**_claims(), "x-ms-sevsnpvm-vmpl": 1},
     False),
    ("generated policy refuses cvm compliance", build_release_policy(MAA, HOSTDATA),
     {**_claims(), "x-ms-compliance-status": "azure-compliant-cvm"}, False),
    ("bool claim equals string 'false'", _policy({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"}),
     _claims(), True),
    ("bool claim equals JSON false", _policy({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": False}), _claims(),
     True),
    ("string claim 'false' equals JSON false", _policy({"claim": "flag", "equals": False}), {"flag": "false"}, True),
    ("int claim equals string '0'", _policy({"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"}), _claims(), True),
    ("int claim does not equal '00'", _policy({"claim": "x-ms-sevsnpvm-vmpl", "equals": "00"}), _claims(), False),
    ("bool true does not equal '1'", _policy({"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "1"}),
     {"x-ms-sevsnpvm-is-debuggable": True}, False),
    ("missing claim fails equals", _policy({"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"}), {}, False),
    ("notEquals passes on a different value", _policy({"claim": "x-ms-sevsnpvm-vmpl", "notEquals": "1"}), _claims(),
     True),
    ("notEquals fails on the same value", _policy({"claim": "x-ms-sevsnpvm-vmpl", "notEquals": 0}), _claims(), False),
    ("notEquals fails on a missing claim", _policy({"claim": "absent", "notEquals": "x"}), _claims(), False),
    ("exists true passes when present", _policy({"claim": "x-ms-sevsnpvm-hostdata", "exists": True}), _claims(), True),
    ("exists true fails when absent", _policy({"claim": "x-ms-sevsnpvm-hostdata", "exists": "true"}), {}, False),
    ("exists false passes when absent", _policy({"claim": "x-ms-debug-flag", "exists": False}), _claims(), True),
    ("greaterOrEquals on string number", _policy({"claim": "x-ms-sevsnpvm-guestsvn", "greaterOrEquals": "3"}),
     _claims(), True),
    ("greater fails at equality", _policy({"claim": "x-ms-sevsnpvm-guestsvn", "greater": 3}), _claims(), False),
    ("less passes below", _policy({"claim": "x-ms-sevsnpvm-guestsvn", "less": "10"}), _claims(), True),
    ("lessOrEquals fails above", _policy({"claim": "x-ms-sevsnpvm-guestsvn", "lessOrEquals": 2}), _claims(), False),
    ("ordering on non-numbers fails", _policy({"claim": "x-ms-compliance-status", "greater": "a"}), _claims(), False),
    ("ordering on bool fails", _policy({"claim": "x-ms-sevsnpvm-is-debuggable", "less": "1"}), _claims(), False),
    ("object claim never equals", _policy({"claim": "x-ms-runtime", "equals": "{}"}), {"x-ms-runtime": {}}, False),
    ("wrong authority refuses", build_release_policy(MAA, HOSTDATA, authority="https://evil.example"), _claims(),
     False),
    ("authority matches with trailing slash and case", _policy({"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"},
                                                                authority=MAA.upper() + "/"), _claims(), True),
    ("top-level anyOf: second authority branch grants",
     {"version": "1.0.0", "anyOf": [
         {"authority": "https://other.attest.azure.net", "allOf": [{"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"}]},
         {"authority": MAA, "allOf": [{"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"}]}]}, _claims(), True),
    ("nested anyOf inside allOf: one alternative suffices",
     _policy({"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"},
             {"anyOf": [{"claim": "x-ms-sevsnpvm-hostdata", "equals": "cd" * 32},
                        {"claim": "x-ms-sevsnpvm-hostdata", "equals": HOSTDATA}]}), _claims(), True),
    ("nested anyOf inside allOf: no alternative refuses",
     _policy({"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"},
             {"anyOf": [{"claim": "x-ms-sevsnpvm-hostdata", "equals": "cd" * 32},
                        {"claim": "x-ms-sevsnpvm-hostdata", "equals": "ef" * 32}]}), _claims(), False),
    ("nested allOf inside anyOf: a failing member sinks its branch",
     _policy({"allOf": [{"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"},
                        {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "true"}]}, kind="anyOf"), _claims(), False),
    ("top-level allOf needs every authority branch",
     {"version": "1.0.0", "allOf": [
         {"authority": MAA, "allOf": [{"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"}]},
         {"authority": MAA, "allOf": [{"claim": "x-ms-sevsnpvm-vmpl", "equals": "1"}]}]}, _claims(), False),
]


class TestReleasePolicyTable:
    @pytest.mark.parametrize(("policy", "claims", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_decision(self, policy: dict[str, Any], claims: dict[str, Any], allowed: bool) -> None:
        assert evaluate_release_policy(policy, claims, issuer=MAA).allowed is allowed

    def test_refusal_names_the_failing_claim(self) -> None:
        decision = evaluate_release_policy(build_release_policy(MAA, HOSTDATA),
                                           {**_claims(), "x-ms-sevsnpvm-hostdata": "cd" * 32}, issuer=MAA)
        assert "x-ms-sevsnpvm-hostdata" in decision.reason


INVALID: list[tuple[str, Any]] = [
    ("not an object", ["anyOf"]),
    ("wrong version", {"version": "2.0.0", "anyOf": [{"authority": MAA, "allOf": [{"claim": "a", "equals": "b"}]}]}),
    ("missing version", {"anyOf": [{"authority": MAA, "allOf": [{"claim": "a", "equals": "b"}]}]}),
    ("empty anyOf", {"version": "1.0.0", "anyOf": []}),
    ("both anyOf and allOf", {"version": "1.0.0", "anyOf": [], "allOf": []}),
    ("unknown operator", _policy({"claim": "a", "matches": "b"})),
    ("two operators", _policy({"claim": "a", "equals": "b", "notEquals": "c"})),
    ("claim without authority", {"version": "1.0.0", "anyOf": [{"claim": "a", "equals": "b"}]}),
    ("exists with a non-boolean", _policy({"claim": "a", "exists": "maybe"})),
    ("unknown root key", {"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": [{"claim": "a", "equals": "b"}]}],
                          "extra": 1}),
    ("too deep", _policy(*[{"anyOf": [{"anyOf": [{"anyOf": [{"anyOf": [{"anyOf": [{"anyOf": [{"anyOf": [
        {"anyOf": [{"claim": "a", "exists": True}]}]}]}]}]}]}]}]}])),
]


class TestFailClosed:
    @pytest.mark.parametrize("policy", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
    def test_malformed_policy_is_invalid(self, policy: Any) -> None:
        with pytest.raises(PolicyInvalid):
            evaluate_release_policy(policy, _claims(), issuer=MAA)
