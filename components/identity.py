"""The group's user-assigned identity and its least-privilege role assignments.

Threat model: the identity is what the SKR sidecar and the app present to Key Vault and ACR. Each
role is scoped to the one resource that needs it: releasing *this* key, reading secrets in *this*
vault, pulling from *this* registry, appending audit batches to *this* blob container. There are no access policies and no registry admin
credentials, so nothing here is a password.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_azure_native import authorization, managedidentity

# Built-in role definition GUIDs (identical in every Azure tenant).
KEY_RELEASE_ROLE = "08bbd89e-9f13-488c-ac41-acfcb10c90ab"  # Key Vault Crypto Service Release User
SECRETS_USER_ROLE = "4633458b-17de-408a-b874-0445c86b69e6"  # Key Vault Secrets User
ACR_PULL_ROLE = "7f951dda-4ed3-4680-a7ca-43fe172d538d"  # AcrPull
BLOB_CONTRIBUTOR_ROLE = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"  # Storage Blob Data Contributor


def role_definition_id(subscription_id: str, role_guid: str) -> str:
    """The subscription-scoped ARM id of a built-in role."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"


def assign_role(name: str, *, principal_id: pulumi.Input[str], subscription_id: pulumi.Input[str], role_guid: str,
                scope: pulumi.Input[str], opts: ResourceOptions,
                principal_type: str | None = None) -> authorization.RoleAssignment:
    """One built-in role for one principal on exactly one scope."""
    return authorization.RoleAssignment(
        name,
        principal_id=principal_id,
        principal_type=principal_type,
        role_definition_id=Output.from_input(subscription_id).apply(lambda sub: role_definition_id(sub, role_guid)),
        scope=scope,
        opts=opts,
    )


@dataclass
class WorkloadIdentityArgs:
    """Inputs of :class:`WorkloadIdentity`.

    Attributes:
        resource_group_name: Resource group of the identity.
        location: Azure region of the identity.
        subscription_id: Subscription that holds the role definitions.
        key_id: ARM id of the release key (Crypto Service Release User scope).
        vault_id: ARM id of the vault (Secrets User scope: the sealed secrets live there).
        registry_id: ARM id of the registry (AcrPull scope).
        audit_container_id: ARM id of the audit blob container (Storage Blob Data Contributor scope).
    """

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    key_id: pulumi.Input[str]
    vault_id: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    audit_container_id: pulumi.Input[str]


class WorkloadIdentity(ComponentResource):
    """A user-assigned identity with exactly four scoped roles.

    Attributes:
        identity_id: ARM id of the identity (attached to the container group).
        client_id: Its client id (the app's IDENTITY_CLIENT_ID).
        role_assignments: The assignments, so the group can wait for them before pulling.
    """

    identity_id: Output[str]
    client_id: Output[str]
    role_assignments: list[authorization.RoleAssignment]

    def __init__(self, name: str, args: WorkloadIdentityArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mcptee:identity:WorkloadIdentity", name, {}, opts)
        child_opts = ResourceOptions(parent=self)
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-uami",
            resource_group_name=args.resource_group_name,
            location=args.location,
            opts=child_opts,
        )
        grants = {"key-release": (KEY_RELEASE_ROLE, args.key_id),
                  "secrets-user": (SECRETS_USER_ROLE, args.vault_id),
                  "acr-pull": (ACR_PULL_ROLE, args.registry_id),
                  "audit-blob": (BLOB_CONTRIBUTOR_ROLE, args.audit_container_id)}
        self.role_assignments = [
            assign_role(f"{name}-{suffix}", principal_id=identity.principal_id, subscription_id=args.subscription_id,
                        role_guid=guid, scope=scope, opts=child_opts,
                        principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL)
            for suffix, (guid, scope) in grants.items()
        ]
        self.identity_id = identity.id
        self.client_id = identity.client_id
        self.register_outputs({"identity_id": self.identity_id, "client_id": self.client_id})
