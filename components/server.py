"""The confidential container groups (ACI `sku: Confidential`) that run the MCP server and SKR sidecar.

Threat model: the group runs only under the CCE policy measured from the same `GroupSpec`, so any
change to images, commands or pinned env makes ACI refuse the containers and Key Vault refuse the
key. Only the app port (8443, HTTPS served by the app itself, the attested channel) is public; the
sidecar binds localhost and its port is never in the group's IP ports. Env carries endpoints and
names, never a secret or a `secure_value`. Replicas share one policy, one hostdata, one key and
one auth audience; each has its own DNS label and https URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pulumi
from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_azure_native import containerinstance

from components.containers import APP_PORT, AUDIT_PREFIX_VAR, GroupSpec, container_args


def _replica(group: GroupSpec, dns_label_prefix: str, index: int) -> GroupSpec:
    """The group as replica `index` runs it: its own audit chain prefix, when the spec leaves one open."""
    if AUDIT_PREFIX_VAR in group.wildcard_names:
        return group.bind({AUDIT_PREFIX_VAR: f"{dns_label_prefix}-{index}"})
    return group


def mcp_url(fqdn: str) -> str:
    """The MCP endpoint of one group: https on `APP_PORT`, served by the app itself."""
    return f"https://{fqdn}:{APP_PORT}/mcp"


@dataclass
class ConfidentialServerArgs:
    """Inputs of :class:`ConfidentialServer`.

    Attributes:
        resource_group_name: Resource group of the groups.
        location: Azure region (must offer confidential ACI).
        group: The bound group spec (every wildcard has a value).
        cce_policy: The base64 CCE policy from :class:`CcePolicy`.
        identity_id: ARM id of the user-assigned identity.
        registry_login_server: ACR host, pulled with the identity (no admin credentials).
        dns_label_prefix: Each replica gets ``<prefix>-<index>``.
        replicas: Number of groups.
        restart_policy: ``Always``, ``OnFailure`` or ``Never``.
        depends_on: Resources to wait for: the role assignments (so the first pull is allowed) and
            the seal steps (so the groups start with secrets sealed to the current key).
    """

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    group: GroupSpec
    cce_policy: pulumi.Input[str]
    identity_id: pulumi.Input[str]
    registry_login_server: pulumi.Input[str]
    dns_label_prefix: str
    replicas: int = 1
    restart_policy: str = "Always"
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class ConfidentialServer(ComponentResource):
    """N identical confidential container groups.

    Attributes:
        mcp_urls: The MCP endpoint of every replica, in order.
        group_names: The container group names, in order.
    """

    mcp_urls: Output[list[str]]
    group_names: Output[list[str]]

    def __init__(self, name: str, args: ConfidentialServerArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mcptee:server:ConfidentialServer", name, {}, opts)
        child_opts = ResourceOptions(parent=self, depends_on=list(args.depends_on))
        groups = [
            containerinstance.ContainerGroup(
                f"{name}-{index}",
                resource_group_name=args.resource_group_name,
                location=args.location,
                sku=containerinstance.ContainerGroupSku.CONFIDENTIAL,
                confidential_compute_properties=containerinstance.ConfidentialComputePropertiesArgs(
                    cce_policy=args.cce_policy),
                identity=containerinstance.ContainerGroupIdentityArgs(
                    type=containerinstance.ResourceIdentityType.USER_ASSIGNED,
                    user_assigned_identities=[args.identity_id]),
                image_registry_credentials=[containerinstance.ImageRegistryCredentialArgs(
                    server=args.registry_login_server, identity=args.identity_id)],
                containers=[container_args(c) for c in _replica(args.group, args.dns_label_prefix, index).containers],
                os_type=containerinstance.OperatingSystemTypes.LINUX,
                restart_policy=args.restart_policy,
                ip_address=containerinstance.IpAddressArgs(
                    type=containerinstance.ContainerGroupIpAddressType.PUBLIC,
                    dns_name_label=f"{args.dns_label_prefix}-{index}",
                    ports=[containerinstance.PortArgs(port=p, protocol="TCP") for p in args.group.public_ports],
                ),
                opts=child_opts,
            )
            for index in range(args.replicas)
        ]
        self.mcp_urls = Output.all(*[g.ip_address.apply(lambda ip: mcp_url(ip.fqdn)) for g in groups])
        self.group_names = Output.all(*[g.name for g in groups])
        self.register_outputs({"mcp_urls": self.mcp_urls, "group_names": self.group_names})
