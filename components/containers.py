"""One description of the confidential container group, rendered both as ARM JSON and as Pulumi args.

Threat model: the CCE policy measures what `az confcom` reads from an ARM template, while Azure
runs what the `ContainerGroup` resource says. If the two were written separately they could drift,
and the group would either fail to start or, worse, the policy would measure something other than
what runs. So both are rendered here from a single `GroupSpec`, and nothing else builds containers.

Which env values are in the policy:
- *Pinned* (literal in the template, so measured): MCP_TEE_MODE, SKR_ENDPOINT, MAA_ENDPOINT,
  AKV_ENDPOINT, MCP_AUTH_*, MCP_AUDIT_* and the sidecar's Port/LogLevel. They are known from stack
  config and the tenant before any resource exists, and pinning them stops an operator from
  pointing the app at another vault, attestation service, token issuer or audit store. confcom
  still lets the host *drop* a variable (`required: false`), so the deployed command asks the app
  to refuse to start when any of them is missing (`TEE_PINNED_ENV` in `app/config.py`; a test
  keeps the two lists in step).
- *Wildcarded* (an ARM parameter with no default, which confcom turns into `.*`): SKR_KEY_NAME and
  IDENTITY_CLIENT_ID. The key is named after the release policy, which contains the hostdata of
  this very policy, so pinning the key name would be a cycle. The identity's client id is an
  output of another resource; it only authenticates to Key Vault, and the release policy (not the
  identity) decides who gets the key, so leaving it open costs nothing and keeps the policy stable
  when the identity is re-created.
- Secrets are never env values at all: the app unseals them from Key Vault secrets at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import pulumi
from pulumi_azure_native import containerinstance

from components.audit_storage import AUDIT_SINK

# The app serves HTTPS itself in TEE mode (the attested channel); no proxy terminates TLS. Not 443: the image
# runs as a non-root user, which cannot bind a port below 1024, and ACI grants no capability to do so
# (docs/decisions.md). The client pins the TLS key, not the port.
APP_PORT = 8443
# `--tee` and `--require-pinned-env` sit in the measured command, which the host cannot drop.
APP_COMMAND = ("mcp-tee", "serve", "--tee", "--require-pinned-env", "--host", "0.0.0.0", "--port", str(APP_PORT))
# Pinned only when configured, and harmless when dropped (the default is the same stdout).
OPTIONAL_PINNED_ENV = frozenset({"MCP_AUDIT_LOG"})
AUDIT_PREFIX_VAR = "MCP_AUDIT_BLOB_PREFIX"
SKR_PORT = 9000
SKR_COMMAND = ("/skr.sh",)
ARM_API_VERSION = "2023-05-01"
ARM_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
GROUP_NAME_PARAMETER = "containerGroupName"
# The SKR sidecar needs little: it answers a handful of local HTTP calls.
SKR_CPU = 0.5
SKR_MEMORY_GB = 1.0


class SpecError(ValueError):
    """A container spec cannot be rendered safely."""


@dataclass(frozen=True)
class EnvVar:
    """One environment variable of a container.

    Attributes:
        name: The variable name.
        value: The value; ``None`` until bound for a wildcarded variable.
        pinned: ``True`` puts the literal value into the CCE policy; ``False`` renders an ARM
            parameter without default, which confcom wildcards.
    """

    name: str
    value: pulumi.Input[str] | None
    pinned: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """One container, as both the template and the resource will describe it."""

    name: str
    image: pulumi.Input[str]
    command: tuple[str, ...]
    env: tuple[EnvVar, ...]
    ports: tuple[int, ...]
    cpu: float
    memory_gb: float


@dataclass(frozen=True)
class GroupSpec:
    """The containers of one confidential group and the ports it exposes publicly."""

    containers: tuple[ContainerSpec, ...]
    public_ports: tuple[int, ...] = (APP_PORT,)

    @property
    def wildcard_names(self) -> tuple[str, ...]:
        """Names of the env vars that the policy leaves open, in order, without duplicates."""
        names = [e.name for c in self.containers for e in c.env if not e.pinned]
        return tuple(dict.fromkeys(names))

    def bind(self, values: Mapping[str, pulumi.Input[str]]) -> GroupSpec:
        """Fill in the wildcarded env vars; pinned ones cannot be overridden."""
        unknown = set(values) - set(self.wildcard_names)
        if unknown:
            raise SpecError(f"only wildcarded env vars can be bound, not {sorted(unknown)}")
        containers = tuple(
            replace(c, env=tuple(e if e.pinned else replace(e, value=values.get(e.name, e.value)) for e in c.env))
            for c in self.containers
        )
        return replace(self, containers=containers)


@dataclass(frozen=True)
class AppEnv:
    """The app's env: endpoints and names only, never a secret.

    Attributes:
        maa_endpoint: MAA host.
        akv_endpoint: Vault host, no scheme.
        auth_issuer: Expected token issuer.
        auth_jwks_url: The issuer's signing keys.
        auth_audience: The audience every replica accepts.
        audit_blob_account_url: The audit sink's blob endpoint.
        audit_blob_container: The audit sink's container.
        audit_log: Optional local audit log target (a path, or ``-`` for stdout).
    """

    maa_endpoint: str
    akv_endpoint: str
    auth_issuer: pulumi.Input[str]
    auth_jwks_url: pulumi.Input[str]
    auth_audience: pulumi.Input[str]
    audit_blob_account_url: str
    audit_blob_container: str
    audit_log: str | None = None


def app_container(image_ref: pulumi.Input[str], env: AppEnv, *, cpu: float, memory_gb: float,
                  command: Sequence[str] = APP_COMMAND) -> ContainerSpec:
    """The MCP server container in TEE mode, talking to the sidecar on localhost."""
    pinned: dict[str, pulumi.Input[str] | None] = {
        "MCP_TEE_MODE": "tee",
        "SKR_ENDPOINT": f"http://localhost:{SKR_PORT}",
        "MAA_ENDPOINT": env.maa_endpoint,
        "AKV_ENDPOINT": env.akv_endpoint,
        "MCP_AUTH_ISSUER": env.auth_issuer,
        "MCP_AUTH_JWKS_URL": env.auth_jwks_url,
        "MCP_AUTH_AUDIENCE": env.auth_audience,
        "MCP_AUDIT_SINK": AUDIT_SINK,
        "MCP_AUDIT_BLOB_ACCOUNT_URL": env.audit_blob_account_url,
        "MCP_AUDIT_BLOB_CONTAINER": env.audit_blob_container,
        "MCP_AUDIT_LOG": env.audit_log,
    }
    variables = [EnvVar(k, v) for k, v in pinned.items() if v is not None]
    variables += [EnvVar("SKR_KEY_NAME", None, pinned=False), EnvVar("IDENTITY_CLIENT_ID", None, pinned=False),
                  # One audit chain per replica: two writers on one chain are refused (fail closed), so each
                  # group gets its own prefix; wildcarded so that every replica shares one policy and hostdata.
                  EnvVar(AUDIT_PREFIX_VAR, None, pinned=False)]
    return ContainerSpec("mcp-server", image_ref, tuple(command or APP_COMMAND), tuple(variables), (APP_PORT,),
                         cpu, memory_gb)


def skr_sidecar(image: str) -> ContainerSpec:
    """Microsoft's SKR sidecar; `skr.sh` reads `Port` and `LogLevel` and binds localhost only."""
    env = (EnvVar("Port", str(SKR_PORT)), EnvVar("LogLevel", "info"))
    return ContainerSpec("skr-sidecar", image, SKR_COMMAND, env, (SKR_PORT,), SKR_CPU, SKR_MEMORY_GB)


def _arm_env_value(var: EnvVar) -> pulumi.Input[str]:
    if var.pinned:
        if var.value is None:
            raise SpecError(f"pinned env var {var.name} has no value")
        return var.value
    return f"[parameters('{var.name}')]"


def _arm_container(spec: ContainerSpec) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "image": spec.image,
        "environmentVariables": [{"name": e.name, "value": _arm_env_value(e)} for e in spec.env],
        "ports": [{"port": p, "protocol": "TCP"} for p in spec.ports],
        "resources": {"requests": {"cpu": spec.cpu, "memoryInGB": spec.memory_gb}},
    }
    if spec.command:
        properties["command"] = list(spec.command)
    return {"name": spec.name, "properties": properties}


def render_arm_template(group: GroupSpec) -> pulumi.Output[str]:
    """Render the ARM template that confcom measures, as canonical JSON."""
    parameters = {GROUP_NAME_PARAMETER: {"type": "string"}}
    parameters.update({name: {"type": "string"} for name in group.wildcard_names})
    template = {
        "$schema": ARM_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": parameters,
        "resources": [{
            "type": "Microsoft.ContainerInstance/containerGroups",
            "apiVersion": ARM_API_VERSION,
            "name": f"[parameters('{GROUP_NAME_PARAMETER}')]",
            "location": "[resourceGroup().location]",
            "properties": {
                "sku": "Confidential",
                "osType": "Linux",
                "confidentialComputeProperties": {"ccePolicy": ""},
                "containers": [_arm_container(c) for c in group.containers],
                "ipAddress": {"type": "Public", "ports": [{"port": p, "protocol": "TCP"} for p in group.public_ports]},
            },
        }],
    }
    return pulumi.Output.from_input(template).apply(lambda t: json.dumps(t, indent=2, sort_keys=True))


def _env_arg(var: EnvVar) -> containerinstance.EnvironmentVariableArgs:
    if var.value is None:
        # Fail closed: an unbound wildcard would start the app without its key name or identity.
        raise SpecError(f"env var {var.name} is not bound to a value")
    return containerinstance.EnvironmentVariableArgs(name=var.name, value=var.value)


def container_args(spec: ContainerSpec) -> containerinstance.ContainerArgs:
    """Render one container as the `ContainerGroup` resource takes it."""
    return containerinstance.ContainerArgs(
        name=spec.name,
        image=spec.image,
        command=list(spec.command) or None,
        environment_variables=[_env_arg(e) for e in spec.env],
        ports=[containerinstance.ContainerPortArgs(port=p, protocol="TCP") for p in spec.ports],
        resources=containerinstance.ResourceRequirementsArgs(
            requests=containerinstance.ResourceRequestsArgs(cpu=spec.cpu, memory_in_gb=spec.memory_gb)),
    )
