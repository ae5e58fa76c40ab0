"""The whole program under mocks, per stack: resource graph, trust-chain invariants, scopes, outputs."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from app.config import TEE_PINNED_ENV
from components.containers import APP_PORT, OPTIONAL_PINNED_ENV, SKR_PORT
from components.identity import ACR_PULL_ROLE, BLOB_CONTRIBUTOR_ROLE, KEY_RELEASE_ROLE, SECRETS_USER_ROLE
from components.key_release import key_name_for
from policy.release_policy import ACI_COMPLIANCE_STATUS
from tests.components.harness import ProgramRun, app_container, deployed_release_policy

GROUP = "azure-native:containerinstance:ContainerGroup"
EXPECTED_PARENTS = {
    "azure-native:containerregistry:Registry": "mcptee:image:AppImage",
    "command:local:Command": None,  # checked per command below
    "azure-native:keyvault:Vault": "mcptee:keyrelease:KeyRelease",
    "azure-native:keyvault:Key": "mcptee:keyrelease:KeyRelease",
    "azure-native:managedidentity:UserAssignedIdentity": "mcptee:identity:WorkloadIdentity",
    "azure-native:authorization:RoleAssignment": None,  # checked per assignment below
    GROUP: "mcptee:server:ConfidentialServer",
    "docker-build:index:Image": "mcptee:image:AppImage",
    "azure-native:storage:StorageAccount": "mcptee:audit:AuditStorage",
    "azure-native:storage:BlobContainer": "mcptee:audit:AuditStorage",
    "azuread:index/application:Application": "mcptee:auth:ResourceServerIdentity",
    "azuread:index/servicePrincipal:ServicePrincipal": "mcptee:auth:ResourceServerIdentity",
    "azuread:index/applicationPreAuthorized:ApplicationPreAuthorized": "mcptee:auth:ResourceServerIdentity",
}
REQUIRED_OUTPUTS = {"mcp_url", "mcp_urls", "group_names", "resource_group_name", "expected_hostdata", "maa_endpoint",
                    "key_id", "key_name", "vault_url", "image_ref", "confcom_version", "confcom_flags",
                    "auth_issuer", "auth_audience", "auth_token_scopes", "audit_blob_account_url"}


def _claims(run: ProgramRun) -> dict[str, str]:
    (branch,) = deployed_release_policy(run)["anyOf"]
    return {c["claim"]: c["equals"] for c in branch["allOf"]}


class TestResourceGraph:
    def test_every_child_is_parented_by_its_component(self, stack_run: ProgramRun) -> None:
        for record in stack_run.resources:
            expected = EXPECTED_PARENTS.get(record.typ)
            if record.typ == "command:local:Command":
                expected = ("mcptee:policy:CcePolicy" if record.name.endswith("-confcom") else
                            "mcptee:sealing:SealedSecrets" if record.name.startswith("seal-") else
                            "mcptee:image:AppImage")
            if record.typ == "azure-native:authorization:RoleAssignment":
                expected = ("mcptee:sealing:SealedSecrets" if "-deployer-" in record.name else
                            "mcptee:identity:WorkloadIdentity")
            if expected is not None:
                assert record.parent_type == expected, f"{record.name} ({record.typ}) must be a child of {expected}"

    def test_only_components_sit_at_stack_level(self, stack_run: ProgramRun) -> None:
        top = {r.typ for r in stack_run.resources if r.parent_type == "pulumi:pulumi:Stack"}
        assert top == {"mcptee:image:AppImage", "mcptee:policy:CcePolicy", "mcptee:keyrelease:KeyRelease",
                       "mcptee:identity:WorkloadIdentity", "mcptee:server:ConfidentialServer",
                       "mcptee:auth:ResourceServerIdentity", "mcptee:audit:AuditStorage",
                       "mcptee:sealing:SealedSecrets"}

    def test_the_resource_group_is_taken_not_created(self, stack_run: ProgramRun) -> None:
        # The deployer's roles are scoped to an existing group (docs/deploy.md): creating one would
        # need subscription scope.
        assert not stack_run.of_type("azure-native:resources:ResourceGroup")
        name = stack_run.stack_outputs["resource_group_name"]
        for group in stack_run.of_type(GROUP):
            assert group.inputs["resourceGroupName"] == name

    def test_no_access_policies_and_no_admin_registry_user(self, stack_run: ProgramRun) -> None:
        assert not stack_run.of_type("azure-native:keyvault:AccessPolicy")
        assert stack_run.one("azure-native:containerregistry:Registry").inputs["adminUserEnabled"] is False

    def test_dev_builds_with_docker_and_prod_with_acr_tasks(self, dev_run: ProgramRun, prod_run: ProgramRun) -> None:
        assert dev_run.of_type("docker-build:index:Image") and not prod_run.of_type("docker-build:index:Image")
        (build,) = [c for c in prod_run.of_type("command:local:Command") if "az acr build" in c.inputs["create"]]
        assert build.inputs["triggers"] == [build.inputs["environment"]["IMAGE"].split(":")[1]]


class TestTrustChain:
    def test_release_policy_pins_sha256_of_exactly_the_groups_policy(self, stack_run: ProgramRun) -> None:
        for group in stack_run.of_type(GROUP):
            policy = group.inputs["confidentialComputeProperties"]["ccePolicy"]
            expected = hashlib.sha256(base64.b64decode(policy)).hexdigest()
            assert _claims(stack_run)["x-ms-sevsnpvm-hostdata"] == expected, f"{group.name}: hostdata mismatch"
        assert stack_run.stack_outputs["expected_hostdata"] == _claims(stack_run)["x-ms-sevsnpvm-hostdata"]

    def test_release_policy_pins_authority_compliance_debug_and_vmpl(self, stack_run: ProgramRun) -> None:
        (branch,) = deployed_release_policy(stack_run)["anyOf"]
        assert branch["authority"] == f"https://{stack_run.stack_outputs['maa_endpoint']}"
        claims = _claims(stack_run)
        assert claims["x-ms-compliance-status"] == ACI_COMPLIANCE_STATUS == "azure-compliant-uvm"
        assert claims["x-ms-sevsnpvm-is-debuggable"] == "false"
        assert claims["x-ms-sevsnpvm-vmpl"] == "0"

    def test_the_deployed_release_policy_releases_to_the_group_and_to_nothing_else(self, stack_run: ProgramRun) -> None:
        from app.emulator.release_policy_eval import evaluate_release_policy

        policy = deployed_release_policy(stack_run)
        issuer = policy["anyOf"][0]["authority"]
        group_claims = {"x-ms-sevsnpvm-hostdata": stack_run.stack_outputs["expected_hostdata"],
                        "x-ms-compliance-status": "azure-compliant-uvm", "x-ms-sevsnpvm-is-debuggable": False,
                        "x-ms-sevsnpvm-vmpl": 0}
        assert evaluate_release_policy(policy, group_claims, issuer=issuer).allowed
        for changed in ({"x-ms-sevsnpvm-hostdata": "0" * 64}, {"x-ms-sevsnpvm-is-debuggable": True},
                        {"x-ms-sevsnpvm-vmpl": 1}, {"x-ms-compliance-status": "not-compliant"}):
            assert not evaluate_release_policy(policy, {**group_claims, **changed}, issuer=issuer).allowed, changed
        assert not evaluate_release_policy(policy, group_claims, issuer="https://evil.attest.azure.net").allowed

    def test_group_carries_the_policy_confcom_printed(self, stack_run: ProgramRun) -> None:
        (confcom,) = [c for c in stack_run.of_type("command:local:Command") if c.name.endswith("-confcom")]
        printed = confcom.outputs["stdout"].strip().splitlines()[-1]
        assert {g.inputs["confidentialComputeProperties"]["ccePolicy"] for g in stack_run.of_type(GROUP)} == {printed}
        assert confcom.inputs["triggers"][0] == confcom.inputs["stdin"]

    def test_key_is_exportable_rsa_hsm_named_after_its_release_policy(self, stack_run: ProgramRun) -> None:
        key = stack_run.one("azure-native:keyvault:Key").inputs
        assert key["properties"]["kty"] == "RSA-HSM"
        assert key["properties"]["attributes"]["exportable"] is True
        hostdata = _claims(stack_run)["x-ms-sevsnpvm-hostdata"]
        assert key["keyName"] == key_name_for(hostdata, key["properties"]["releasePolicy"]["data"])
        assert key["keyName"].startswith(f"mcp-skr-{hostdata[:12]}-")

    def test_vault_is_premium_rbac_soft_delete_purge_protected(self, stack_run: ProgramRun) -> None:
        props = stack_run.one("azure-native:keyvault:Vault").inputs["properties"]
        assert props["sku"]["name"] == "premium"
        assert props["enableRbacAuthorization"] is True
        assert props["enableSoftDelete"] is True and props["enablePurgeProtection"] is True
        assert "accessPolicies" not in props


class TestTemplateMatchesGroup:
    def test_confcom_template_describes_the_same_containers(self, stack_run: ProgramRun) -> None:
        (stdin,) = stack_run.confcom_stdin
        template = json.loads(stdin)["resources"][0]["properties"]
        for group in stack_run.of_type(GROUP):
            deployed = {c["name"]: c for c in group.inputs["containers"]}
            rendered = {c["name"]: c["properties"] for c in template["containers"]}
            assert deployed.keys() == rendered.keys() == {"mcp-server", "skr-sidecar"}
            for name, spec in rendered.items():
                live = deployed[name]
                assert live["image"] == spec["image"], f"{name}: image differs"
                assert live.get("command", []) == spec.get("command", []), f"{name}: command differs"
                assert [e["name"] for e in live["environmentVariables"]] == [
                    e["name"] for e in spec["environmentVariables"]], f"{name}: env names differ"
                assert [p["port"] for p in live["ports"]] == [p["port"] for p in spec["ports"]]
                for env in spec["environmentVariables"]:
                    if not env["value"].startswith("[parameters("):
                        assert {"name": env["name"], "value": env["value"]} in live["environmentVariables"]
            assert [p["port"] for p in group.inputs["ipAddress"]["ports"]] == [
                p["port"] for p in template["ipAddress"]["ports"]]

    def test_only_key_name_and_client_id_are_wildcarded(self, stack_run: ProgramRun) -> None:
        (stdin,) = stack_run.confcom_stdin
        template = json.loads(stdin)
        assert set(template["parameters"]) == {"containerGroupName", "SKR_KEY_NAME", "IDENTITY_CLIENT_ID",
                                               "MCP_AUDIT_BLOB_PREFIX"}
        assert all("defaultValue" not in p for p in template["parameters"].values())


class TestConfidentialServer:
    def test_groups_are_confidential_with_the_user_assigned_identity(self, stack_run: ProgramRun) -> None:
        uami = stack_run.one("azure-native:managedidentity:UserAssignedIdentity")
        for group in stack_run.of_type(GROUP):
            inputs = group.inputs
            assert inputs["sku"] == "Confidential"
            assert inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [uami.resource_id]}
            (creds,) = inputs["imageRegistryCredentials"]
            assert set(creds) == {"server", "identity"}, "registry pull must use the identity, not a password"

    def test_images_are_referenced_by_digest(self, stack_run: ProgramRun) -> None:
        for group in stack_run.of_type(GROUP):
            images = {c["name"]: c["image"] for c in group.inputs["containers"]}
            assert images["mcp-server"] == stack_run.stack_outputs["image_ref"]
            assert all("@sha256:" in image for image in images.values())

    def test_only_the_https_port_is_public(self, stack_run: ProgramRun) -> None:
        for group in stack_run.of_type(GROUP):
            assert [p["port"] for p in group.inputs["ipAddress"]["ports"]] == [APP_PORT] == [8443]
            sidecar = next(c for c in group.inputs["containers"] if c["name"] == "skr-sidecar")
            assert {"name": "Port", "value": str(SKR_PORT)} in sidecar["environmentVariables"]

    def test_env_holds_endpoints_and_names_bound_to_the_real_resources(self, stack_run: ProgramRun) -> None:
        key = stack_run.one("azure-native:keyvault:Key")
        uami = stack_run.one("azure-native:managedidentity:UserAssignedIdentity")
        vault_host = stack_run.stack_outputs["vault_url"].removeprefix("https://").rstrip("/")
        for group in stack_run.of_type(GROUP):
            app = app_container(group)
            env = {e["name"]: e for e in app["environmentVariables"]}
            assert all(set(e) == {"name", "value"} for e in env.values()), "no secureValue anywhere"
            assert env["MCP_TEE_MODE"]["value"] == "tee"
            assert env["SKR_ENDPOINT"]["value"] == f"http://localhost:{SKR_PORT}"
            assert env["SKR_KEY_NAME"]["value"] == key.inputs["keyName"]
            assert env["IDENTITY_CLIENT_ID"]["value"] == uami.outputs["clientId"]
            assert env["AKV_ENDPOINT"]["value"] == vault_host
            assert env["MAA_ENDPOINT"]["value"] == stack_run.stack_outputs["maa_endpoint"]

    def test_each_replica_writes_its_own_audit_chain(self, prod_run: ProgramRun) -> None:
        """Two writers on one chain are refused, so a shared prefix would stop the second replica."""
        groups = prod_run.of_type(GROUP)
        prefixes = [{e["name"]: e["value"] for e in app_container(g)["environmentVariables"]}["MCP_AUDIT_BLOB_PREFIX"]
                    for g in groups]
        assert len(groups) >= 2 and len(set(prefixes)) == len(groups)

    def test_the_app_gets_exactly_the_variables_it_refuses_to_start_without(self, stack_run: ProgramRun) -> None:
        for group in stack_run.of_type(GROUP):
            app = app_container(group)
            names = {e["name"] for e in app["environmentVariables"]}
            assert names - OPTIONAL_PINNED_ENV == TEE_PINNED_ENV, "the app's check and the deployment disagree"
            # The check is asked for in argv, which the policy enforces exactly and the host cannot drop.
            assert {"--tee", "--require-pinned-env"} <= set(app["command"])

    def test_replicas_share_policy_and_key_with_own_dns_labels(self, prod_run: ProgramRun) -> None:
        groups = prod_run.of_type(GROUP)
        assert len(groups) == 2 == len(prod_run.stack_outputs["mcp_urls"])
        assert len({g.inputs["confidentialComputeProperties"]["ccePolicy"] for g in groups}) == 1
        assert len({g.inputs["ipAddress"]["dnsNameLabel"] for g in groups}) == 2
        assert prod_run.stack_outputs["mcp_url"] == prod_run.stack_outputs["mcp_urls"][0]

    def test_restart_policy_and_resources_come_from_config(self, dev_run: ProgramRun, prod_run: ProgramRun) -> None:
        assert dev_run.one(GROUP).inputs["restartPolicy"] == "OnFailure"
        prod_app = app_container(prod_run.of_type(GROUP)[0])
        assert prod_app["resources"]["requests"] == {"cpu": 2.0, "memoryInGB": 4.0}


class TestRoleScopes:
    @pytest.mark.parametrize("suffix, role, scope_type", [
        ("key-release", KEY_RELEASE_ROLE, "azure-native:keyvault:Key"),
        ("secrets-user", SECRETS_USER_ROLE, "azure-native:keyvault:Vault"),
        ("acr-pull", ACR_PULL_ROLE, "azure-native:containerregistry:Registry"),
        ("audit-blob", BLOB_CONTRIBUTOR_ROLE, "azure-native:storage:BlobContainer"),
    ])
    def test_each_role_is_scoped_to_one_resource(self, stack_run: ProgramRun, suffix: str, role: str,
                                                 scope_type: str) -> None:
        (assignment,) = [r for r in stack_run.of_type("azure-native:authorization:RoleAssignment")
                         if r.name == f"workload-{suffix}"]
        target = stack_run.one(scope_type)
        uami = stack_run.one("azure-native:managedidentity:UserAssignedIdentity")
        assert assignment.inputs["scope"] == target.resource_id, f"{suffix} must be scoped to {scope_type}"
        assert assignment.inputs["roleDefinitionId"].endswith(f"/roleDefinitions/{role}")
        assert assignment.inputs["principalId"] == uami.outputs["principalId"]
        assert assignment.inputs["principalType"] == "ServicePrincipal"

    def test_exactly_four_workload_and_two_deployer_assignments(self, stack_run: ProgramRun) -> None:
        names = sorted(r.name for r in stack_run.of_type("azure-native:authorization:RoleAssignment"))
        assert names == ["seal-deployer-key-reader", "seal-deployer-secrets-officer", "workload-acr-pull",
                         "workload-audit-blob", "workload-key-release", "workload-secrets-user"]


class TestOutputs:
    def test_stack_exports_what_the_agent_consumes(self, stack_run: ProgramRun) -> None:
        outputs = stack_run.stack_outputs
        assert REQUIRED_OUTPUTS <= set(outputs)
        assert outputs["key_id"] == f"{outputs['vault_url']}keys/{outputs['key_name']}"
        assert all(url.startswith("https://") and url.endswith("/mcp") and ":8080" not in url
                   for url in outputs["mcp_urls"])
        # The mocks record resources in the order their registrations finish, which varies; the export is in index order.
        assert outputs["group_names"] == sorted(g.outputs["name"] for g in stack_run.of_type(GROUP))
