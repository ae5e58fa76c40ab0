"""Key Vault Premium and the exportable RSA-HSM key that only the attested group can release.

Threat model: the key unseals every baseline secret, so the vault is Premium (HSM-backed keys),
uses RBAC only (no access policies to drift), and keeps soft delete and purge protection on so a
compromised operator cannot destroy and re-create it under the same name. The key's release
policy is built by `policy.release_policy` and pins hostdata, the MAA authority, compliance,
non-debuggable and VMPL 0.

`keyvault.Key` is create-only: ARM never updates an existing key's release policy. The key is
therefore named after its release policy (`mcp-skr-<hostdata[:12]>-<sha256(policy)[:8]>`), so a
new image, a new group shape or a new MAA authority yields a *new* key, after which the baseline
secrets must be re-sealed (see `reseal_hint`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_azure_native import keyvault

from policy.release_policy import build_release_policy, encode_release_policy

KEY_TYPE = "RSA-HSM"
KEY_SIZE = 3072
SOFT_DELETE_RETENTION_DAYS = 90
SEALED_SECRET_NAMES = ("github-token", "db-connection-string", "webhook-url")


def key_name_for(hostdata: str, policy_data: str) -> str:
    """Name a key after the release policy it carries (and, readably, after its hostdata)."""
    policy_digest = hashlib.sha256(policy_data.encode()).hexdigest()
    return f"mcp-skr-{hostdata[:12]}-{policy_digest[:8]}"


def reseal_hint(vault_url: str, key_name: str) -> str:
    """The commands that re-seal the baseline secrets to a new key (values come on stdin)."""
    commands = [f"mcp-tee seal --vault {vault_url} --key {key_name} --name {secret}" for secret in SEALED_SECRET_NAMES]
    return "Re-seal the baseline secrets to this key, each value on stdin: " + " ; ".join(commands)


@dataclass
class KeyReleaseArgs:
    """Inputs of :class:`KeyRelease`.

    Attributes:
        resource_group_name: Resource group of the vault.
        location: Azure region of the vault.
        vault_name: Globally unique vault name.
        tenant_id: Entra tenant of the vault.
        maa_endpoint: MAA host that the release policy trusts.
        hostdata: The CCE policy's hostdata to pin.
    """

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    vault_name: str
    tenant_id: pulumi.Input[str]
    maa_endpoint: str
    hostdata: pulumi.Input[str]


class KeyRelease(ComponentResource):
    """A Premium vault and the release-policy-bound key.

    Attributes:
        vault_id: ARM id of the vault (the Secrets User scope).
        vault_url: ``https://<vault>.vault.azure.net/``.
        key_id: ARM id of the key (the Crypto Service Release User scope).
        key_uri: Data-plane key identifier (``https://<vault>/keys/<name>``).
        key_name: The key's name, derived from its release policy.
        release_policy_data: The base64url release policy the key carries.
    """

    vault_id: Output[str]
    vault_url: Output[str]
    key_id: Output[str]
    key_uri: Output[str]
    key_name: Output[str]
    release_policy_data: Output[str]

    def __init__(self, name: str, args: KeyReleaseArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mcptee:keyrelease:KeyRelease", name, {}, opts)
        child_opts = ResourceOptions(parent=self)
        vault = keyvault.Vault(
            f"{name}-vault",
            vault_name=args.vault_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            properties=keyvault.VaultPropertiesArgs(
                tenant_id=args.tenant_id,
                sku=keyvault.SkuArgs(family="A", name=keyvault.SkuName.PREMIUM),
                enable_rbac_authorization=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=SOFT_DELETE_RETENTION_DAYS,
                enable_purge_protection=True,
                enabled_for_deployment=False,
                enabled_for_disk_encryption=False,
                enabled_for_template_deployment=False,
            ),
            opts=child_opts,
        )
        maa_endpoint = args.maa_endpoint
        self.release_policy_data = Output.from_input(args.hostdata).apply(
            lambda hostdata: encode_release_policy(build_release_policy(maa_endpoint, hostdata)))
        key_name = Output.all(Output.from_input(args.hostdata), self.release_policy_data).apply(
            lambda values: key_name_for(values[0], values[1]))
        key = keyvault.Key(
            f"{name}-key",
            key_name=key_name,
            vault_name=vault.name,
            resource_group_name=args.resource_group_name,
            properties=keyvault.KeyPropertiesArgs(
                kty=KEY_TYPE,
                key_size=KEY_SIZE,
                attributes=keyvault.KeyAttributesArgs(enabled=True, exportable=True),
                release_policy=keyvault.KeyReleasePolicyArgs(
                    content_type="application/json; charset=utf-8",
                    data=self.release_policy_data,
                ),
            ),
            opts=child_opts,
        )
        self.vault_id = vault.id
        self.vault_url = vault.properties.apply(lambda p: p.vault_uri)
        self.key_id = key.id
        self.key_uri = key.key_uri
        self.key_name = key.name
        self.register_outputs({"vault_url": self.vault_url, "key_id": self.key_id, "key_name": self.key_name})
