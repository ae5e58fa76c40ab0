"""The CrossGuard rules: each refuses a violating resource and passes a good one; the real stacks pass."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from policy.pack import rules
from policy.pack.policies import POLICIES
from policy.release_policy import build_release_policy, encode_release_policy
from tests.components.harness import ProgramRun, TEST_SKR_IMAGE

HOSTDATA = "ab" * 32
APP_IMAGE = "acr.azurecr.io/mcp-tee@sha256:" + "c" * 64
GOOD_GROUP: dict[str, Any] = {
    "sku": "Confidential",
    "confidentialComputeProperties": {"ccePolicy": base64.b64encode(b"package policy").decode()},
    "containers": [
        {"name": "mcp-server", "image": APP_IMAGE, "ports": [{"port": 443.0}],
         "environmentVariables": [{"name": "MCP_TEE_MODE", "value": "tee"},
                                  {"name": "SKR_KEY_NAME", "value": "mcp-skr-abc"},
                                  {"name": "MCP_AUTH_JWKS_URL", "value": "https://login.example.com/jwks"}]},
        {"name": "skr-sidecar", "image": TEST_SKR_IMAGE, "ports": [{"port": 9000.0}],
         "environmentVariables": [{"name": "Port", "value": "9000"}]},
    ],
    "ipAddress": {"type": "Public", "ports": [{"port": 443.0, "protocol": "TCP"}]},
}
GOOD_VAULT = {"properties": {"sku": {"family": "A", "name": "premium"}, "enableRbacAuthorization": True,
                             "enableSoftDelete": True, "enablePurgeProtection": True}}


def _key(policy: dict | None, *, retained: bool = True, expires: Any = 1.8e9) -> dict[str, Any]:
    props: dict[str, Any] = {"kty": "RSA-HSM", "attributes": {"exportable": True, "expires": expires}}
    if policy is not None:
        props["releasePolicy"] = {"data": encode_release_policy(policy)}
    return {"properties": props, "tags": {rules.RETAIN_TAG: "true"} if retained else {}}


def _group(mutate) -> dict[str, Any]:
    group = copy.deepcopy(GOOD_GROUP)
    mutate(group)
    return group


def _add_env(name: str, value: str, key: str = "value"):
    return lambda g: g["containers"][0]["environmentVariables"].append({"name": name, key: value})


GOOD_KEY = _key(build_release_policy("sharedweu.weu.attest.azure.net", HOSTDATA))
UNPINNED = {"version": "1.0.0", "anyOf": [{"authority": "https://maa", "allOf": [
    {"claim": "x-ms-compliance-status", "equals": "azure-compliant-uvm"}]}]}
DEBUGGABLE = {"version": "1.0.0", "anyOf": [{"authority": "https://maa", "allOf": [
    {"claim": "x-ms-sevsnpvm-hostdata", "equals": HOSTDATA},
    {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "true"}]}]}
SECOND_BRANCH_OPEN = {"version": "1.0.0", "anyOf": [
    build_release_policy("maa.example", HOSTDATA)["anyOf"][0], {"authority": "https://evil", "allOf": []}]}
PLAIN_HTTP_AUTHORITY = build_release_policy("maa.example", HOSTDATA, authority="http://maa.example")


def _without(claim: str) -> dict:
    policy = build_release_policy("maa.example", HOSTDATA)
    policy["anyOf"][0]["allOf"] = [c for c in policy["anyOf"][0]["allOf"] if c["claim"] != claim]
    return policy


CASES = [
    # (rule, resource type, violating props, passing props)
    (rules.confidential_group, rules.CONTAINER_GROUP, _group(lambda g: g.update(sku="Standard")), GOOD_GROUP),
    (rules.confidential_group, rules.CONTAINER_GROUP, _group(lambda g: g.pop("confidentialComputeProperties")),
     GOOD_GROUP),
    (rules.premium_vault, rules.VAULT, {"properties": {**GOOD_VAULT["properties"], "sku": {"name": "standard"}}},
     GOOD_VAULT),
    (rules.premium_vault, rules.VAULT, {"properties": {**GOOD_VAULT["properties"], "enablePurgeProtection": False}},
     GOOD_VAULT),
    (rules.premium_vault, rules.VAULT, {"properties": {**GOOD_VAULT["properties"], "enableRbacAuthorization": False,
                                                       "accessPolicies": [{"objectId": "x"}]}}, GOOD_VAULT),
    (rules.exportable_key_release, rules.KEY, _key(None), GOOD_KEY),
    (rules.exportable_key_release, rules.KEY, _key(UNPINNED), GOOD_KEY),
    (rules.exportable_key_release, rules.KEY, _key(DEBUGGABLE), GOOD_KEY),
    (rules.exportable_key_release, rules.KEY, _key(SECOND_BRANCH_OPEN), GOOD_KEY),
    (rules.exportable_key_release, rules.KEY, _key(PLAIN_HTTP_AUTHORITY), GOOD_KEY),
    (rules.exportable_key_release, rules.KEY, _key(_without("x-ms-compliance-status")), GOOD_KEY),
    (rules.exportable_key_release, rules.KEY, _key(_without("x-ms-sevsnpvm-vmpl")), GOOD_KEY),
    (rules.retained_release_key, rules.KEY, _key(build_release_policy("maa.example", HOSTDATA), retained=False),
     GOOD_KEY),
    (rules.expiring_release_key, rules.KEY, _key(build_release_policy("maa.example", HOSTDATA), expires=None),
     GOOD_KEY),
    (rules.expiring_release_key, rules.KEY, _key(build_release_policy("maa.example", HOSTDATA), expires=True),
     GOOD_KEY),
    (rules.no_secret_env, rules.CONTAINER_GROUP, _group(_add_env("GITHUB_TOKEN", "set-later")), GOOD_GROUP),
    (rules.no_secret_env, rules.CONTAINER_GROUP, _group(_add_env("UPSTREAM", "ghp_" + "A" * 36)), GOOD_GROUP),
    (rules.no_secret_env, rules.CONTAINER_GROUP, _group(_add_env("DB", "postgresql://app:hunter2@db/app")),
     GOOD_GROUP),
    (rules.no_secret_env, rules.CONTAINER_GROUP, _group(_add_env("HOOK", "opaque", key="secureValue")), GOOD_GROUP),
    (rules.images_by_digest, rules.CONTAINER_GROUP,
     _group(lambda g: g["containers"][0].update(image="acr.azurecr.io/mcp-tee:latest")), GOOD_GROUP),
    (rules.images_by_digest, rules.CONTAINER_GROUP,
     _group(lambda g: g["containers"][1].update(image="mcr.microsoft.com/aci/skr:2.14")), GOOD_GROUP),
    (rules.sidecar_port_private, rules.CONTAINER_GROUP,
     _group(lambda g: g["ipAddress"]["ports"].append({"port": 9000.0})), GOOD_GROUP),
]


class TestEachRuleRefusesAndPasses:
    @pytest.mark.parametrize("rule, typ, bad, good", CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
    def test_violating_resource_is_refused_and_good_one_passes(self, rule, typ, bad, good) -> None:
        assert rule(typ, bad), f"{rule.__name__} must refuse the violating resource"
        assert rule(typ, good) == [], f"{rule.__name__} must pass the good resource"

    def test_rules_ignore_other_resource_types(self) -> None:
        for rule, _, bad, _ in CASES:
            assert rule("azure-native:resources:ResourceGroup", bad) == []

    def test_non_exportable_key_needs_no_release_policy_retention_or_expiry(self) -> None:
        plain = {"properties": {"attributes": {"exportable": False}}}
        for rule in (rules.exportable_key_release, rules.retained_release_key, rules.expiring_release_key):
            assert rule(rules.KEY, plain) == []

    def test_garbled_release_policy_is_refused(self) -> None:
        garbled = {"properties": {"attributes": {"exportable": True}, "releasePolicy": {"data": "%%%"}}}
        assert rules.exportable_key_release(rules.KEY, garbled)

    def test_secret_messages_never_echo_the_value(self) -> None:
        value = "ghp_" + "Z" * 36
        messages = rules.no_secret_env(rules.CONTAINER_GROUP, _group(_add_env("X", value)))
        assert messages and not any(value in m for m in messages)

    def test_sidecar_on_default_port_is_caught_when_that_port_is_public(self) -> None:
        def expose_default(g):
            g["containers"][1].update(ports=[], environmentVariables=[])
            g["ipAddress"]["ports"] = [{"port": 8080.0}]
        assert rules.sidecar_port_private(rules.CONTAINER_GROUP, _group(expose_default))


class TestPackWiring:
    def test_all_eight_rules_are_mandatory_policies(self) -> None:
        assert len(POLICIES) == len(rules.RULES) == 8
        assert {p.enforcement_level.value for p in POLICIES} == {"mandatory"}

    def test_policy_reports_each_violation(self) -> None:
        policy = next(p for p in POLICIES if p.name == "images-by-digest")
        reported: list[str] = []
        args = type("Args", (), {"resource_type": rules.CONTAINER_GROUP,
                                 "props": _group(lambda g: g["containers"][0].update(image="x:latest"))})()
        policy.validate(args, lambda message, urn=None: reported.append(message))
        assert reported == ["container mcp-server: image must be referenced by @sha256 digest"]


class TestRealStacksPass:
    def test_every_resource_of_every_stack_passes_every_rule(self, stack_run: ProgramRun) -> None:
        for record in stack_run.resources:
            props = json.loads(json.dumps(record.inputs))
            for name, (_, rule) in rules.RULES.items():
                assert rule(record.typ, props) == [], f"{record.name} breaks {name}"
