"""The MCP endpoint's OAuth identity in Entra ID: an application exposing `mcp:read`/`mcp:write`, and the
issuer, JWKS and audience the app must pin.

Threat model: the server refuses to listen on a public address without inbound auth, so a stack
without these settings deploys groups that crash-loop, and a hand-typed issuer or audience can
silently trust the wrong tenant. Here the program creates the resource application itself and
derives all three values from it, so they always describe a token issuer that exists and an
audience that Entra really puts into `aud`:
- issuer `https://sts.windows.net/<tenant>/` and JWKS `https://login.microsoftonline.com/<tenant>/discovery/keys`
  (access tokens version 1, so `aud` is the application's identifier URI, an https URL);
- the audience is that identifier URI, shared by every replica (one pinned value, one CCE policy,
  one key; docs/decisions.md) and on a domain the tenant has verified (its initial domain by default).
Only principals with an app role assignment get a token at all (`app_role_assignment_required`);
delegated tokens carry the scopes they asked for in `scp`, app-only tokens their roles in `roles`,
and the server reads `roles` only when a token has no scopes. The Azure CLI is pre-authorized
for the scopes so an operator's agent gets a token with `az account get-access-token`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pulumi
import pulumi_azuread as azuread
from pulumi import ComponentResource, Output, ResourceOptions

READ_SCOPE = "mcp:read"
WRITE_SCOPE = "mcp:write"
SCOPES = (READ_SCOPE, WRITE_SCOPE)
# Microsoft's well-known client id of the Azure CLI (identical in every tenant).
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
ACCESS_TOKEN_VERSION = 1
# Stable ids: a scope or role id must not change between runs, or Entra drops its grants.
_ID_NAMESPACE = uuid.UUID("6f1c2a4e-3f0b-5d8e-9a7c-2b4d6e8f0a1c")


def permission_id(application: str, kind: str, value: str) -> str:
    """A deterministic UUID for one scope or app role of one application."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{application}/{kind}/{value}"))


def token_issuer(tenant_id: str) -> str:
    """The `iss` of Entra version-1 access tokens for a tenant."""
    return f"https://sts.windows.net/{tenant_id}/"


def token_jwks_url(tenant_id: str) -> str:
    """The signing keys of those tokens."""
    return f"https://login.microsoftonline.com/{tenant_id}/discovery/keys"


def default_audience(initial_domain: str, display_name: str) -> str:
    """An identifier URI Entra accepts without a custom domain: the tenant's verified initial domain."""
    return f"https://{initial_domain}/{display_name}"


@dataclass
class ResourceServerIdentityArgs:
    """Inputs of :class:`ResourceServerIdentity`.

    Attributes:
        display_name: The application's name in Entra (``mcp-tee-<stack>``).
        tenant_id: The tenant that issues the tokens.
        audience: The identifier URI (the `aud`); None derives it from the tenant's initial domain.
    """

    display_name: str
    tenant_id: pulumi.Input[str]
    audience: str | None = None


class ResourceServerIdentity(ComponentResource):
    """An Entra application and service principal for the MCP resource.

    Attributes:
        issuer: Expected `iss` (``MCP_AUTH_ISSUER``).
        jwks_url: Where the issuer's keys live (``MCP_AUTH_JWKS_URL``).
        audience: Expected `aud`, the identifier URI (``MCP_AUTH_AUDIENCE``).
        client_id: The application's client id.
        token_scopes: What an agent asks for, e.g. ``<audience>/mcp:read``.
    """

    issuer: Output[str]
    jwks_url: Output[str]
    audience: Output[str]
    client_id: Output[str]
    token_scopes: Output[list[str]]

    def __init__(self, name: str, args: ResourceServerIdentityArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mcptee:auth:ResourceServerIdentity", name, {}, opts)
        child_opts = ResourceOptions(parent=self)
        if args.audience:
            audience = Output.from_input(args.audience)
        else:
            domains = azuread.get_domains_output(only_initial=True, opts=pulumi.InvokeOptions(parent=self))
            audience = domains.domains.apply(lambda found: default_audience(found[0].domain_name, args.display_name))
        scope_ids = {value: permission_id(args.display_name, "scope", value) for value in SCOPES}
        application = azuread.Application(
            f"{name}-app",
            display_name=args.display_name,
            sign_in_audience="AzureADMyOrg",
            identifier_uris=[audience],
            api=azuread.ApplicationApiArgs(
                requested_access_token_version=ACCESS_TOKEN_VERSION,
                oauth2_permission_scopes=[
                    azuread.ApplicationApiOauth2PermissionScopeArgs(
                        id=scope_ids[value], value=value, type="User", enabled=True,
                        admin_consent_display_name=f"{verb} through the MCP server",
                        admin_consent_description=f"{verb} through the confidential MCP server's tools.",
                        user_consent_display_name=f"{verb} through the MCP server",
                        user_consent_description=f"{verb} through the confidential MCP server's tools for you.")
                    for value, verb in ((READ_SCOPE, "Read"), (WRITE_SCOPE, "Write"))
                ],
            ),
            app_roles=[
                azuread.ApplicationAppRoleArgs(
                    id=permission_id(args.display_name, "role", value), value=value, enabled=True,
                    allowed_member_types=["User", "Application"], display_name=value,
                    description=f"May obtain tokens for the MCP server with {value}.")
                for value in SCOPES
            ],
            opts=child_opts,
        )
        azuread.ServicePrincipal(
            f"{name}-sp",
            client_id=application.client_id,
            # Only principals assigned one of the roles get a token for this API at all.
            app_role_assignment_required=True,
            opts=child_opts,
        )
        azuread.ApplicationPreAuthorized(
            f"{name}-azure-cli",
            application_id=application.id,
            authorized_client_id=AZURE_CLI_CLIENT_ID,
            permission_ids=list(scope_ids.values()),
            opts=child_opts,
        )
        tenant = Output.from_input(args.tenant_id)
        self.issuer = tenant.apply(token_issuer)
        self.jwks_url = tenant.apply(token_jwks_url)
        self.audience = audience
        self.client_id = application.client_id
        self.token_scopes = audience.apply(lambda uri: [f"{uri}/{value}" for value in SCOPES])
        self.register_outputs({"issuer": self.issuer, "audience": self.audience, "client_id": self.client_id})
