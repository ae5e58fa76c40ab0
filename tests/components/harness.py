"""Runs the Pulumi program under mocks, from a stack's YAML config, and records every input and output.

The `az` and `pulumi` CLIs cannot run here, so the mocks play Azure and the CLIs: confcom's stdout
is a realistic base64 rego policy generated from the very template it was given, so a change to
the group changes the policy and its hostdata exactly as it would for real.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import runpy
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import settings
from pulumi.runtime.mocks import MockMonitor, MockResourceArgs, MockCallArgs, Mocks

REPO = Path(__file__).resolve().parents[2]
PROJECT = "mcp-tee"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
TENANT = "99999999-8888-7777-6666-555555555555"
INITIAL_DOMAIN = "contoso.onmicrosoft.com"
# Syntactically valid digests for tests only; real stacks pin the published images.
TEST_SKR_IMAGE = "mcr.microsoft.com/aci/skr:2.14@sha256:" + hashlib.sha256(b"test-skr-image").hexdigest()
TEST_BASE_IMAGE = "python:3.11-slim-bookworm@sha256:" + hashlib.sha256(b"test-base-image").hexdigest()
# The baseline secrets as the engine hands them over: Pulumi config secrets.
TEST_SECRETS = {"mcp-tee:githubToken": "ghp_test-token-for-mocks", "mcp-tee:dbConnectionString":
                "postgresql://app:test-password@db.example/app", "mcp-tee:webhookUrl": "https://hooks.example/test"}


@dataclass
class Recorded:
    """One registered resource: its URN, type, logical name, inputs, mocked outputs and id."""

    urn: str
    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    resource_id: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def parent_type(self) -> str | None:
        """The type of the resource's parent, from the URN's type chain."""
        chain = self.urn.split("::")[2].split("$")
        return chain[-2] if len(chain) > 1 else None


@dataclass
class ProgramRun:
    """Everything one program run produced."""

    resources: list[Recorded] = field(default_factory=list)
    component_outputs: list[dict[str, Any]] = field(default_factory=list)
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    confcom_stdin: list[str] = field(default_factory=list)
    # (type, name) -> the resource options the program registered (retainOnDelete, ignoreChanges, ...)
    options: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Recorded]:
        """All resources of one type token."""
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> Recorded:
        """The single resource of a type; fails if there are none or several."""
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, found {len(found)}"
        return found[0]


def app_container(group: Recorded) -> dict[str, Any]:
    """The MCP server container of a recorded ContainerGroup, as its inputs have it."""
    return next(c for c in group.inputs["containers"] if c["name"] == "mcp-server")


def app_env(group: Recorded) -> dict[str, str]:
    """That container's env, name -> value."""
    return {e["name"]: e["value"] for e in app_container(group)["environmentVariables"]}


def deployed_release_policy(run: "ProgramRun") -> dict[str, Any]:
    """The release policy the program puts on its Key Vault key, decoded from `releasePolicy.data`."""
    data = run.one("azure-native:keyvault:Key").inputs["properties"]["releasePolicy"]["data"]
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def rego_policy_for(template_json: str, flags: str = "") -> str:
    """What confcom would print for this template and flags: a base64 rego policy describing its containers."""
    template = json.loads(template_json)
    parameters = set(template.get("parameters", {}))
    containers = []
    for container in template["resources"][0]["properties"]["containers"]:
        props = container["properties"]
        rules = []
        for env in props.get("environmentVariables", []):
            value = env["value"]
            param = value[len("[parameters('"):-len("')]")] if value.startswith("[parameters('") else None
            if param in parameters:
                rules.append({"pattern": f"{env['name']}=.*", "required": False, "strategy": "re2"})
            else:
                rules.append({"pattern": f"{env['name']}={value}", "required": False, "strategy": "string"})
        layer = hashlib.sha256(props["image"].encode()).hexdigest()
        containers.append({
            "id": props["image"], "name": container["name"], "command": props.get("command", []),
            "env_rules": rules, "layers": [layer], "allow_elevated": False, "exec_processes": [],
            "signals": [], "allow_stdio_access": "--disable-stdio" not in flags.split(), "no_new_privileges": False,
        })
    rego = "\n".join([
        "package policy", "",
        "import future.keywords.every", "import future.keywords.in", "",
        'api_version := "0.10.0"', 'framework_version := "0.2.3"', "",
        f"containers := {json.dumps(containers, sort_keys=True)}", "",
        "allow_properties_access := true", "allow_dump_stacks := false", "allow_runtime_logging := false",
        "allow_environment_variable_dropping := true", "allow_unencrypted_scratch := false",
        "allow_capability_dropping := true", "",
        "mount_device := data.framework.mount_device", "create_container := data.framework.create_container",
        "exec_in_container := data.framework.exec_in_container", "reason := {\"errors\": data.framework.errors}",
    ])
    return base64.b64encode(rego.encode()).decode()


def _arm_id(provider: str, name: str, rg: str = "rg-mcp-tee") -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/{provider}/{name}"


class AzureMocks(Mocks):
    """Plays Azure, Docker and the CLIs with deterministic, realistic outputs."""

    def __init__(self, run: ProgramRun) -> None:
        self.run = run

    def call(self, args: MockCallArgs) -> tuple[dict, list]:
        if args.token == "azure-native:authorization:getClientConfig":
            return {"tenantId": TENANT, "subscriptionId": SUBSCRIPTION, "clientId": "ci-client",
                    "objectId": "ci-object"}, []
        if args.token == "azure-native:resources:getResourceGroup":
            name = args.args["resourceGroupName"]
            return {"name": name, "id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}",
                    "location": "westeurope", "type": "Microsoft.Resources/resourceGroups"}, []
        if args.token == "azuread:index/getDomains:getDomains":
            assert args.args.get("onlyInitial") is True, "only the verified initial domain may be used"
            return {"id": "domains", "domains": [{"domainName": INITIAL_DOMAIN, "initial": True, "verified": True,
                                                  "adminManaged": True, "authenticationType": "Managed",
                                                  "default": True, "root": True, "supportedServices": []}]}, []
        raise AssertionError(f"unexpected invoke {args.token}")

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        state = dict(inputs)
        resource_id = f"{args.name}-id"
        typ = args.typ
        if typ == "azure-native:resources:ResourceGroup":
            state["name"] = inputs["resourceGroupName"]
            resource_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{state['name']}"
        elif typ == "azure-native:containerregistry:Registry":
            state.update(name=inputs["registryName"], loginServer=f"{inputs['registryName']}.azurecr.io")
            resource_id = _arm_id("Microsoft.ContainerRegistry/registries", inputs["registryName"])
        elif typ == "docker-build:index:Image":
            digest = "sha256:" + hashlib.sha256(json.dumps(inputs["tags"]).encode()).hexdigest()
            state.update(digest=digest, ref=f"{inputs['tags'][0]}@{digest}")
        elif typ == "command:local:Command":
            state["stdout"] = self._command_stdout(inputs)
        elif typ == "azure-native:keyvault:Vault":
            state["name"] = inputs["vaultName"]
            state["properties"] = {**inputs["properties"], "vaultUri": f"https://{inputs['vaultName']}.vault.azure.net/"}
            resource_id = _arm_id("Microsoft.KeyVault/vaults", inputs["vaultName"])
        elif typ == "azure-native:keyvault:Key":
            key_uri = f"https://{inputs['vaultName']}.vault.azure.net/keys/{inputs['keyName']}"
            version = hashlib.sha256(key_uri.encode()).hexdigest()[:32]
            state.update(name=inputs["keyName"], keyUri=key_uri, keyUriWithVersion=f"{key_uri}/{version}")
            resource_id = _arm_id("Microsoft.KeyVault/vaults", f"{inputs['vaultName']}/keys/{inputs['keyName']}")
        elif typ == "azure-native:storage:StorageAccount":
            state["name"] = inputs["accountName"]
            resource_id = _arm_id("Microsoft.Storage/storageAccounts", inputs["accountName"])
        elif typ == "azure-native:storage:BlobContainer":
            state["name"] = inputs["containerName"]
            resource_id = _arm_id("Microsoft.Storage/storageAccounts",
                                  f"{inputs['accountName']}/blobServices/default/containers/{inputs['containerName']}")
        elif typ == "azuread:index/application:Application":
            state.update(clientId=f"app-client-{args.name}", objectId=f"app-object-{args.name}")
            resource_id = f"/applications/app-object-{args.name}"
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            state.update(name=args.name, clientId=f"client-{args.name}", principalId=f"principal-{args.name}")
            resource_id = _arm_id("Microsoft.ManagedIdentity/userAssignedIdentities", args.name)
        elif typ == "azure-native:containerinstance:ContainerGroup":
            ip = dict(inputs["ipAddress"])
            ip["fqdn"] = f"{ip['dnsNameLabel']}.{inputs['location']}.azurecontainer.io"
            identity = inputs["identity"]
            # Output maps are keyed by identity id, as ARM returns them.
            state.update(name=args.name, ipAddress=ip,
                         identity={**identity, "userAssignedIdentities": {i: {} for i in identity["userAssignedIdentities"]}})
        self.run.resources.append(Recorded("", typ, args.name, inputs, state, resource_id))
        return resource_id, state

    def _command_stdout(self, inputs: dict) -> str:
        if "confcom" in inputs["create"]:
            self.run.confcom_stdin.append(inputs["stdin"])
            policy = rego_policy_for(inputs["stdin"], inputs["environment"]["CONFCOM_FLAGS"])
            return "WARNING: wildcards approved for SKR_KEY_NAME, IDENTITY_CLIENT_ID\n" + policy + "\n"
        if "mcp-tee seal" in inputs["create"]:
            env = inputs["environment"]
            return f"sealed {env['SECRET_NAME']!r} with key {env['KEY_NAME']} -> secret id\n"
        if "az acr build" in inputs["create"]:
            return "sha256:" + hashlib.sha256(inputs["environment"]["IMAGE"].encode()).hexdigest() + "\n"
        if "az acr login" in inputs["create"]:
            return ""
        raise AssertionError("unexpected command")


class RecordingMonitor(MockMonitor):
    """Keeps what components pass to `register_outputs`, which the stock monitor drops."""

    def __init__(self, mocks: AzureMocks) -> None:
        super().__init__(mocks)
        self.run = mocks.run

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        self.run.options[(request.type, request.name)] = {
            "retainOnDelete": request.retainOnDelete if request.HasField("retainOnDelete") else None,
            "ignoreChanges": list(request.ignoreChanges), "protect": request.protect,
            "dependencies": list(request.dependencies),
            "object": json_format.MessageToDict(request.object)}
        return super().RegisterResource(request)

    def RegisterResourceOutputs(self, request):  # noqa: N802 (gRPC method name)
        self.run.component_outputs.append(json_format.MessageToDict(request.outputs))
        return super().RegisterResourceOutputs(request)


def stack_config(stack: str) -> dict[str, str]:
    """The stack's YAML config, as the engine would hand it to the program (all strings)."""
    data = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in data["config"].items()}


@contextmanager
def _environment(env: dict[str, str], cwd: Path) -> Iterator[None]:
    saved, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(saved_cwd)


def run_program(stack: str, *, overrides: dict[str, str] | None = None, drop: tuple[str, ...] = (),
                secret_keys: tuple[str, ...] = (), env: dict[str, str] | None = None,
                with_skr_image: bool = True) -> ProgramRun:
    """Run `__main__.py` for one stack under mocks and return everything it registered.

    The stack's YAML is completed the way docs/deploy.md says: digests for the SKR sidecar and
    the base image, and the baseline secrets as Pulumi secrets.
    """
    config = stack_config(stack)
    if with_skr_image:
        config[f"{PROJECT}:skrImage"] = TEST_SKR_IMAGE
    config[f"{PROJECT}:baseImage"] = TEST_BASE_IMAGE
    config.update(TEST_SECRETS)
    secret_keys = (*secret_keys, *TEST_SECRETS)
    config.update(overrides or {})
    for key in drop:
        config.pop(key, None)
    # Pulumi's test runner uses the thread's current loop; async tests may have closed theirs.
    asyncio.set_event_loop(asyncio.new_event_loop())
    run = ProgramRun()
    mocks = AzureMocks(run)
    monitor = RecordingMonitor(mocks)
    settings.ROOT.set(None)
    pulumi.runtime.set_all_config(config, list(secret_keys))
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")
        outputs = settings.get_root_resource().outputs
        return pulumi.Output.all(**outputs).apply(run.stack_outputs.update)

    with _environment(env or {}, REPO):
        program()
    urns = {(reg.urn.split("::")[-1], reg.urn.split("::")[2].split("$")[-1]): reg.urn
            for reg in monitor.get_registered_resources().values()}
    for record in run.resources:
        record.urn = urns[(record.name, record.typ)]
        record.options = run.options.get((record.typ, record.name), {})
    return run
