"""Builds the app image into a private ACR and hands out an immutable `repo@sha256:…` reference.

Two builders, chosen by the `imageBuilder` stack setting:
- ``docker``: `pulumi_docker_build.Image` builds locally with buildx and pushes. It authenticates
  with the host's Docker credentials (`az acr login --name <registry>`), so no registry password
  ever enters Pulumi state.
- ``acr-task``: `az acr build` runs the build inside Azure (no local Docker needed), through
  `pulumi_command.local.Command`; the digest is read back with `az acr repository show`.

Either way the tag is the content digest of the build context, and the deployment uses only the
digest, because the CCE policy measures image layers and a mutable tag could move under it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import pulumi
import pulumi_docker_build as docker_build
from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_azure_native import containerregistry
from pulumi_command import local

# Build byproducts and local state that never belong in the image or its tag.
CONTEXT_EXCLUDED_DIRS = frozenset({".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", "node_modules"})
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
ACR_TASK_SCRIPT = """set -eu
az acr build --registry "$REGISTRY" --image "$IMAGE" --file "$DOCKERFILE" --platform linux/amd64 "$CONTEXT" 1>&2
az acr repository show --name "$REGISTRY" --image "$IMAGE" --query digest --output tsv
"""


def context_digest(path: str) -> str:
    """Hash the build context (paths and bytes), skipping local state, into 64 hex characters."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in CONTEXT_EXCLUDED_DIRS)
        for filename in sorted(files):
            full = os.path.join(root, filename)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def _checked_digest(value: str) -> str:
    value = value.strip()
    if not _DIGEST.match(value):
        # Fail closed: without a real digest the policy would measure a moving tag.
        raise ValueError("image build did not return a sha256 digest")
    return value


@dataclass
class AppImageArgs:
    """Inputs of :class:`AppImage`.

    Attributes:
        resource_group_name: Resource group of the registry.
        location: Azure region of the registry.
        registry_name: Globally unique ACR name; the admin user stays disabled.
        repository: Repository inside the registry.
        context: Build context directory.
        dockerfile: Dockerfile path.
        builder: ``docker`` or ``acr-task``.
    """

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    registry_name: str
    repository: str
    context: str = "."
    dockerfile: str = "Dockerfile"
    builder: str = "docker"


class AppImage(ComponentResource):
    """A private registry and the app image in it, referenced by digest.

    Attributes:
        registry_id: ARM id of the registry (the AcrPull scope).
        login_server: Registry host, e.g. ``myacr.azurecr.io``.
        image_ref: ``<login server>/<repository>@sha256:<digest>``.
    """

    registry_id: Output[str]
    login_server: Output[str]
    image_ref: Output[str]

    def __init__(self, name: str, args: AppImageArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mcptee:image:AppImage", name, {}, opts)
        child_opts = ResourceOptions(parent=self)
        registry = containerregistry.Registry(
            f"{name}-registry",
            registry_name=args.registry_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=containerregistry.SkuArgs(name="Standard"),
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            opts=child_opts,
        )
        tag = context_digest(args.context)[:16]
        if args.builder == "acr-task":
            digest = self._acr_task(name, args, tag, registry, child_opts)
        else:
            digest = self._docker(name, args, tag, registry, child_opts)
        self.registry_id = registry.id
        self.login_server = registry.login_server
        self.image_ref = Output.concat(registry.login_server, "/", args.repository, "@",
                                       digest.apply(_checked_digest))
        self.register_outputs({"registry_id": self.registry_id, "image_ref": self.image_ref})

    @staticmethod
    def _docker(name: str, args: AppImageArgs, tag: str, registry: containerregistry.Registry,
                opts: ResourceOptions) -> Output[str]:
        image = docker_build.Image(
            f"{name}-build",
            push=True,
            tags=[Output.concat(registry.login_server, "/", args.repository, ":", tag)],
            context=docker_build.BuildContextArgs(location=args.context),
            dockerfile=docker_build.DockerfileArgs(location=args.dockerfile),
            platforms=[docker_build.Platform.LINUX_AMD64],
            opts=opts,
        )
        return image.digest

    @staticmethod
    def _acr_task(name: str, args: AppImageArgs, tag: str, registry: containerregistry.Registry,
                  opts: ResourceOptions) -> Output[str]:
        build = local.Command(
            f"{name}-acr-build",
            create=ACR_TASK_SCRIPT,
            environment={
                "REGISTRY": registry.name,
                "IMAGE": f"{args.repository}:{tag}",
                "DOCKERFILE": args.dockerfile,
                "CONTEXT": args.context,
            },
            triggers=[tag],
            opts=opts,
        )
        return build.stdout
