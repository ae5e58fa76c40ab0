"""The MCP resource's Entra identity: scopes, who may get a token, and the auth env derived from it."""

from __future__ import annotations

import pytest

from app.auth.settings import AuthSettings
from components.resource_server import AZURE_CLI_CLIENT_ID, SCOPES
from tests.components.harness import INITIAL_DOMAIN, TENANT, ProgramRun, app_env, run_program

APP = "azuread:index/application:Application"
GROUP = "azure-native:containerinstance:ContainerGroup"


def _stack_name(run: ProgramRun) -> str:
    return run.one(APP).inputs["displayName"].removeprefix("mcp-tee-")


def _permission_ids(run: ProgramRun) -> tuple[list[str], list[str]]:
    app = run.one(APP).inputs
    return [s["id"] for s in app["api"]["oauth2PermissionScopes"]], [r["id"] for r in app["appRoles"]]


class TestEntraApplication:
    def test_exposes_read_and_write_as_scopes_and_app_roles(self, stack_run: ProgramRun) -> None:
        app = stack_run.one(APP).inputs
        scopes = app["api"]["oauth2PermissionScopes"]
        assert sorted(s["value"] for s in scopes) == sorted(SCOPES) == ["mcp:read", "mcp:write"]
        assert sorted(r["value"] for r in app["appRoles"]) == ["mcp:read", "mcp:write"]
        assert app["signInAudience"] == "AzureADMyOrg"

    def test_tokens_carry_the_identifier_uri_as_audience(self, stack_run: ProgramRun) -> None:
        app = stack_run.one(APP).inputs
        # Version-1 access tokens put the identifier URI (an https URL) into `aud`.
        assert app["api"]["requestedAccessTokenVersion"] == 1
        assert app["identifierUris"] == [stack_run.stack_outputs["auth_audience"]]
        assert stack_run.stack_outputs["auth_audience"] == f"https://{INITIAL_DOMAIN}/mcp-tee-{_stack_name(stack_run)}"

    def test_only_assigned_principals_get_tokens(self, stack_run: ProgramRun) -> None:
        sp = stack_run.one("azuread:index/servicePrincipal:ServicePrincipal").inputs
        assert sp["appRoleAssignmentRequired"] is True
        assert sp["clientId"] == stack_run.stack_outputs["auth_client_id"]

    def test_azure_cli_is_preauthorized_for_exactly_the_scopes(self, stack_run: ProgramRun) -> None:
        pre = stack_run.one("azuread:index/applicationPreAuthorized:ApplicationPreAuthorized").inputs
        scope_ids = {s["id"] for s in stack_run.one(APP).inputs["api"]["oauth2PermissionScopes"]}
        assert pre["authorizedClientId"] == AZURE_CLI_CLIENT_ID
        assert set(pre["permissionIds"]) == scope_ids

    def test_scope_and_role_ids_are_stable_across_runs(self, dev_run: ProgramRun) -> None:
        again = run_program("dev")
        assert _permission_ids(again) == _permission_ids(dev_run)


class TestAuthEnv:
    def test_every_replica_pins_the_same_issuer_jwks_and_audience(self, stack_run: ProgramRun) -> None:
        outputs = stack_run.stack_outputs
        for group in stack_run.of_type(GROUP):
            env = app_env(group)
            assert env["MCP_AUTH_ISSUER"] == outputs["auth_issuer"] == f"https://sts.windows.net/{TENANT}/"
            assert env["MCP_AUTH_JWKS_URL"] == f"https://login.microsoftonline.com/{TENANT}/discovery/keys"
            assert env["MCP_AUTH_AUDIENCE"] == outputs["auth_audience"]

    def test_the_app_accepts_the_auth_env_it_is_given(self, stack_run: ProgramRun) -> None:
        # The group can start: the server's own settings loader takes exactly this env.
        env = app_env(stack_run.of_type(GROUP)[0])
        settings = AuthSettings.from_env(env)
        assert settings is not None and settings.audience == stack_run.stack_outputs["auth_audience"]

    def test_a_custom_verified_domain_audience_is_used_verbatim(self) -> None:
        run = run_program("prod", overrides={"mcp-tee:mcpAuthAudience": "https://mcp.contoso.com/mcp"})
        assert run.stack_outputs["auth_audience"] == "https://mcp.contoso.com/mcp"
        assert run.stack_outputs["auth_token_scopes"] == ["https://mcp.contoso.com/mcp/mcp:read",
                                                          "https://mcp.contoso.com/mcp/mcp:write"]
        assert all(app_env(g)["MCP_AUTH_AUDIENCE"] == "https://mcp.contoso.com/mcp" for g in run.of_type(GROUP))

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_replicas_share_one_policy_because_they_share_the_audience(self, stack: str, dev_run: ProgramRun,
                                                                       prod_run: ProgramRun) -> None:
        run = {"dev": dev_run, "prod": prod_run}[stack]
        policies = {g.inputs["confidentialComputeProperties"]["ccePolicy"] for g in run.of_type(GROUP)}
        assert len(policies) == 1
