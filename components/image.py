"""Builds the app image reproducibly into a private ACR and hands out an immutable `repo@sha256:…` reference.

Two builders, chosen by the `imageBuilder` stack setting:
- ``docker``: `pulumi_docker_build.Image` builds locally with buildx and pushes. It authenticates
  with the host's Docker credentials, which a `az acr login` step refreshes right before every
  build (so the first deploy on an empty subscription works, and no password enters Pulumi state).
- ``acr-task``: `az acr build` runs the build inside Azure (no local Docker needed), through
  `pulumi_command.local.Command`; the digest is read back with `az acr repository show`.

Reproducible, because every new digest is a new hostdata, a new key and a re-seal: the base image
comes pinned by digest from stack config (build argument `BASE_IMAGE`), timestamps are fixed by
`SOURCE_DATE_EPOCH` (a stack setting, not the commit time, which a docs-only commit would move),
and the tag is the digest of exactly what the builder sees (`components/build_context.py`), so a
change to docs or local state neither rebuilds nor rotates.
The deployment uses only the digest, because the CCE policy measures image layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_docker_build as docker_build
from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_azure_native import containerregistry
from pulumi_command import local

from components.build_context import context_digest

TAG_LENGTH = 16
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
ACR_TASK_SCRIPT = """set -eu
az acr build --registry "$REGISTRY" --image "$IMAGE" --file "$DOCKERFILE" --platform linux/amd64 \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" "$CONTEXT" 1>&2
az acr repository show --name "$REGISTRY" --image "$IMAGE" --query digest --output tsv
"""


REGISTRY_LOGIN_SCRIPT = 'az acr login --name "$REGISTRY" 1>&2'


class ImageBuildError(ValueError):
    """The build returned no image digest."""


def _checked_digest(value: str) -> str:
    value = value.strip()
    if not _DIGEST.match(value):
        # Fail closed: without a real digest the policy would measure a moving tag.
        raise ImageBuildError("image build did not return a sha256 digest")
    return value


@dataclass
class AppImageArgs:
    """Inputs of :class:`AppImage`.

    Attributes:
        resource_group_name: Resource group of the registry.
        location: Azure region of the registry.
        registry_name: Globally unique ACR name; the admin user stays disabled.
        repository: Repository inside the registry.
        base_image: The Dockerfile's base, pinned by digest (build argument ``BASE_IMAGE``).
        source_date_epoch: Fixed timestamp of everything the build writes (``SOURCE_DATE_EPOCH``).
        context: Build context directory.
        dockerfile: Dockerfile path.
        builder: ``docker`` or ``acr-task``.
    """

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    registry_name: str
    repository: str
    base_image: str
    source_date_epoch: str
    context: str = "."
    dockerfile: str = "Dockerfile"
    builder: str = "docker"

    @property
    def build_args(self) -> dict[str, str]:
        """The build arguments, part of the tag because they change the image."""
        return {"BASE_IMAGE": self.base_image, "SOURCE_DATE_EPOCH": self.source_date_epoch}


class AppImage(ComponentResource):
    """A private registry and the app image in it, referenced by digest.

    Attributes:
        registry_id: ARM id of the registry (the AcrPull scope).
        registry_name: The registry's name (what `az acr login --name` takes).
        login_server: Registry host, e.g. ``myacr.azurecr.io``.
        image_ref: ``<login server>/<repository>@sha256:<digest>``.
        tag: The content tag (first characters of the context digest).
    """

    registry_id: Output[str]
    registry_name: Output[str]
    login_server: Output[str]
    image_ref: Output[str]
    tag: str

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
            # A documented choice (docs/deploy.md): ACR Tasks, CI runners and ACI pull over the public
            # endpoint; access is Entra-only (no admin user, no anonymous pull) and images go by digest.
            public_network_access=containerregistry.PublicNetworkAccess.ENABLED,
            opts=child_opts,
        )
        self.tag = context_digest(args.context, args.dockerfile, args.build_args)[:TAG_LENGTH]
        if args.builder == "acr-task":
            digest = self._acr_task(name, args, registry, child_opts)
        else:
            digest = self._docker(name, args, registry, child_opts)
        self.registry_id = registry.id
        self.registry_name = registry.name
        self.login_server = registry.login_server
        self.image_ref = Output.concat(registry.login_server, "/", args.repository, "@",
                                       digest.apply(_checked_digest))
        self.register_outputs({"registry_id": self.registry_id, "image_ref": self.image_ref})

    def _docker(self, name: str, args: AppImageArgs, registry: containerregistry.Registry,
                opts: ResourceOptions) -> Output[str]:
        # Docker pushes with the runner's own credentials; a fresh CI runner has none, and on the first
        # deploy the registry has only just been created. The login re-runs whenever the build does.
        login = local.Command(
            f"{name}-registry-login",
            create=REGISTRY_LOGIN_SCRIPT,
            environment={"REGISTRY": registry.name},
            triggers=[self.tag],
            opts=opts,
        )
        image = docker_build.Image(
            f"{name}-build",
            push=True,
            tags=[Output.concat(registry.login_server, "/", args.repository, ":", self.tag)],
            context=docker_build.BuildContextArgs(location=args.context),
            dockerfile=docker_build.DockerfileArgs(location=args.dockerfile),
            build_args=args.build_args,
            platforms=[docker_build.Platform.LINUX_AMD64],
            opts=ResourceOptions.merge(opts, ResourceOptions(depends_on=[login])),
        )
        return image.digest

    def _acr_task(self, name: str, args: AppImageArgs, registry: containerregistry.Registry,
                  opts: ResourceOptions) -> Output[str]:
        build = local.Command(
            f"{name}-acr-build",
            create=ACR_TASK_SCRIPT,
            environment={
                "REGISTRY": registry.name,
                "IMAGE": f"{args.repository}:{self.tag}",
                "DOCKERFILE": args.dockerfile,
                "CONTEXT": args.context,
                **args.build_args,
            },
            triggers=[self.tag],
            opts=opts,
        )
        return build.stdout
