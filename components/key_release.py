"""Key Vault Premium and the exportable RSA-HSM key that only the attested group can release.

Threat model: the key unseals every baseline secret, so the vault is Premium (HSM-backed keys),
uses RBAC only (no access policies to drift), and keeps soft delete and purge protection on so a
compromised operator cannot destroy and re-create it under the same name. The key's release
policy is built by `policy.release_policy` and pins hostdata, the MAA authority, compliance,
non-debuggable and VMPL 0.

`keyvault.Key` is create-only: ARM never updates an existing key's release policy. The key is
therefore named after its release policy and the rotation label
(`mcp-skr-<hostdata[:12]>-<sha256(policy, rotation)[:8]>`), so a new image, a new group shape, a new
MAA authority or a bumped `keyRotation` yields a *new* key, and the sealing step re-seals the
baseline secrets to it in the same `up` (`components/sealing.py`).

Old keys are never deleted by the program (`retain_on_delete`, declared by the `RETAIN_TAG` tag
that the CrossGuard pack checks): deleting goes through the Key Vault data plane, which the
deployer has no right to, and a group still running the previous image may need its key to
restart. Disable them once nothing uses them (docs/deploy.md). Every key expires
(`keyExpiryDays`), so a key that is never rotated stops releasing on a known date; bump `keyRotation` before it
(docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import pulumi
from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_azure_native import keyvault

from policy.pack.rules import RETAIN_TAG
from policy.release_policy import build_release_policy, encode_release_policy

KEY_TYPE = "RSA-HSM"
KEY_SIZE = 3072
SOFT_DELETE_RETENTION_DAYS = 90
SECONDS_PER_DAY = 86400


def key_name_for(hostdata: str, policy_data: str, rotation: str = "1") -> str:
    """Name a key after the release policy it carries, its rotation label and, readably, its hostdata."""
    policy_digest = hashlib.sha256(f"{policy_data}\0{rotation}".encode()).hexdigest()
    return f"mcp-skr-{hostdata[:12]}-{policy_digest[:8]}"


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
        expiry_days: Days from creation until the key expires.
        rotation: Rotation label; a new value creates a new key for the same hostdata.
    """

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    vault_name: str
    tenant_id: pulumi.Input[str]
    maa_endpoint: str
    hostdata: pulumi.Input[str]
    expiry_days: int = 365
    rotation: str = "1"


class KeyRelease(ComponentResource):
    """A Premium vault and the release-policy-bound key.

    Attributes:
        vault_id: ARM id of the vault (the Secrets User scope).
        vault_url: ``https://<vault>.vault.azure.net/``.
        key_id: ARM id of the key (the Crypto Service Release User scope).
        key_uri: Data-plane key identifier (``https://<vault>/keys/<name>``).
        key_name: The key's name, derived from its release policy.
        key_version_uri: The versioned key identifier (what the sealing step is triggered by).
        release_policy_data: The base64url release policy the key carries.
    """

    vault_id: Output[str]
    vault_url: Output[str]
    key_id: Output[str]
    key_uri: Output[str]
    key_name: Output[str]
    key_version_uri: Output[str]
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
                # A documented choice (docs/deploy.md): the SKR sidecar in a public ACI group and the
                # deployer reach the vault over its public endpoint; RBAC and the release policy guard it.
                public_network_access="Enabled",
            ),
            opts=child_opts,
        )
        maa_endpoint = args.maa_endpoint
        self.release_policy_data = Output.from_input(args.hostdata).apply(
            lambda hostdata: encode_release_policy(build_release_policy(maa_endpoint, hostdata)))
        rotation = args.rotation
        key_name = Output.all(Output.from_input(args.hostdata), self.release_policy_data).apply(
            lambda values: key_name_for(values[0], values[1], rotation))
        # Counted from this run; `ignore_changes` keeps the expiry an existing key was created with.
        expires = int(time.time()) + args.expiry_days * SECONDS_PER_DAY
        key = keyvault.Key(
            f"{name}-key",
            key_name=key_name,
            vault_name=vault.name,
            resource_group_name=args.resource_group_name,
            properties=keyvault.KeyPropertiesArgs(
                kty=KEY_TYPE,
                key_size=KEY_SIZE,
                attributes=keyvault.KeyAttributesArgs(enabled=True, exportable=True, expires=expires),
                release_policy=keyvault.KeyReleasePolicyArgs(
                    content_type="application/json; charset=utf-8",
                    data=self.release_policy_data,
                ),
            ),
            tags={RETAIN_TAG: "true"},
            opts=ResourceOptions(parent=self, retain_on_delete=True,
                                 ignore_changes=["properties.attributes.expires"]),
        )
        self.vault_id = vault.id
        self.vault_url = vault.properties.apply(lambda p: p.vault_uri)
        self.key_id = key.id
        self.key_uri = key.key_uri
        self.key_name = key.name
        self.key_version_uri = key.key_uri_with_version
        self.register_outputs({"vault_url": self.vault_url, "key_id": self.key_id, "key_name": self.key_name})
