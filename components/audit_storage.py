"""The audit sink's storage: a blob container the group appends signed audit batches to, off the box.

Threat model: with stdio disabled in the CCE policy (prod), stdout reaches nobody, so the audit
trail must leave through a channel the customer controls. The account accepts Entra tokens only
(no shared keys, so no connection string exists to leak), no anonymous blob access, TLS 1.2+, and
the workload identity gets Storage Blob Data Contributor on this one container, not the account.
The records are hash-chained and signed inside the TEE, so the storage holder can drop or
withhold them but cannot forge them; `mcp-tee audit verify` reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_azure_native import storage

AUDIT_SINK = "blob"
BLOB_DNS_SUFFIX = "blob.core.windows.net"


def blob_account_url(account_name: str) -> str:
    """The account's blob endpoint (``MCP_AUDIT_BLOB_ACCOUNT_URL``)."""
    return f"https://{account_name}.{BLOB_DNS_SUFFIX}"


@dataclass
class AuditStorageArgs:
    """Inputs of :class:`AuditStorage`.

    Attributes:
        resource_group_name: Resource group of the account.
        location: Azure region of the account.
        account_name: Globally unique storage account name (3-24 lowercase letters and digits).
        container_name: The blob container the audit batches go to.
    """

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    account_name: str
    container_name: str


class AuditStorage(ComponentResource):
    """A storage account and one private container for the audit stream.

    Attributes:
        account_url: ``https://<account>.blob.core.windows.net`` (pinned in the policy).
        container_name: The container name (pinned in the policy).
        container_id: ARM id of the container (the role assignment's scope).
    """

    account_url: str
    container_name: str
    container_id: Output[str]

    def __init__(self, name: str, args: AuditStorageArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mcptee:audit:AuditStorage", name, {}, opts)
        child_opts = ResourceOptions(parent=self)
        account = storage.StorageAccount(
            f"{name}-account",
            account_name=args.account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            enable_https_traffic_only=True,
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            # A documented choice (docs/deploy.md): ACI groups with a public IP cannot reach a private
            # endpoint, so the account is reachable publicly and guarded by Entra RBAC alone.
            public_network_access=storage.PublicNetworkAccess.ENABLED,
            opts=child_opts,
        )
        container = storage.BlobContainer(
            f"{name}-container",
            account_name=account.name,
            container_name=args.container_name,
            resource_group_name=args.resource_group_name,
            public_access=storage.PublicAccess.NONE,
            opts=child_opts,
        )
        self.account_url = blob_account_url(args.account_name)
        self.container_name = args.container_name
        self.container_id = container.id
        self.register_outputs({"account_url": self.account_url, "container_id": self.container_id})
