"""Reads and validates the stack configuration in one place, failing closed on anything unsafe.

Threat model: stack config is plaintext in `Pulumi.<stack>.yaml` and in CI logs. The baseline
secrets (GitHub token, DB connection string, webhook URL) must never travel through it: they are
sealed with `mcp-tee seal` into Key Vault after deploy. So keys that look like those secrets are
refused outright, and images must be pinned by digest because the CCE policy measures them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import pulumi

PROJECT = "mcp-tee"
IMAGE_BUILDERS = frozenset({"docker", "acr-task"})
RESTART_POLICIES = frozenset({"Always", "OnFailure", "Never"})
MAX_REPLICAS = 20
# Baseline secrets go through `mcp-tee seal`, never through stack config.
FORBIDDEN_SECRET_KEYS = frozenset({
    "githubToken", "dbConnectionString", "webhookUrl",
    "GITHUB_TOKEN", "DB_CONNECTION_STRING", "WEBHOOK_URL",
})
SKR_REPOSITORY = "mcr.microsoft.com/aci/skr"
_SKR_IMAGE = re.compile(r"^mcr\.microsoft\.com/aci/skr(:[\w.-]+)?@sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_VAULT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
_REGISTRY_NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")
_DNS_LABEL = re.compile(r"^[a-z][a-z0-9-]{1,58}[a-z0-9]$")


_T = TypeVar("_T")


class ConfigError(ValueError):
    """The stack configuration is missing a value or holds an unsafe one."""


def _reject(key: str, reason: str) -> NoReturn:
    # Name the key, never echo the value: it might be a secret pasted into the wrong place.
    raise ConfigError(f"{PROJECT}:{key}: {reason}")


@dataclass(frozen=True)
class StackConfig:
    """Everything the program needs, validated.

    Attributes:
        stack: The stack name (``dev``, ``prod``).
        location: Azure region, from ``azure-native:location``.
        resource_group_name: Resource group to create.
        registry_name: Azure Container Registry name (globally unique).
        vault_name: Key Vault name (globally unique, 3-24 characters).
        vault_dns_suffix: Key Vault DNS suffix; ``vault.azure.net`` in the public cloud.
        maa_endpoint: MAA instance host that the release policy pins.
        skr_image: The SKR sidecar image, pinned by digest.
        image_context: Docker build context for the app image.
        dockerfile: Dockerfile path for the app image.
        image_repository: Repository name inside the registry.
        image_builder: ``docker`` (local buildx) or ``acr-task`` (``az acr build``).
        cce_policy_file: A pre-generated base64 CCE policy, instead of running confcom.
        app_command: Override of the image's command; empty keeps the image's own.
        replicas: Number of confidential container groups.
        dns_label_prefix: Prefix of each group's public DNS label.
        cpu: App container CPU cores.
        memory_gb: App container memory in GB.
        restart_policy: ``Always``, ``OnFailure`` or ``Never``.
        auth_issuer: Optional OAuth issuer for the MCP endpoint.
        auth_jwks_url: Optional JWKS URL of that issuer.
        auth_audience: Optional audience (the canonical server URL).
        audit_log: Optional audit log target (a path, or ``-`` for stdout).
    """

    stack: str
    location: str
    resource_group_name: str
    registry_name: str
    vault_name: str
    vault_dns_suffix: str
    maa_endpoint: str
    skr_image: str
    image_context: str
    dockerfile: str
    image_repository: str
    image_builder: str
    cce_policy_file: str | None
    app_command: tuple[str, ...]
    replicas: int
    dns_label_prefix: str
    cpu: float
    memory_gb: float
    restart_policy: str
    auth_issuer: str | None
    auth_jwks_url: str | None
    auth_audience: str | None
    audit_log: str | None

    @property
    def vault_host(self) -> str:
        """The vault's data-plane host, without scheme (the app's AKV_ENDPOINT)."""
        return f"{self.vault_name}.{self.vault_dns_suffix}"


def _match(cfg: pulumi.Config, key: str, pattern: re.Pattern[str], what: str, default: str | None = None) -> str:
    value = cfg.get(key) or default
    if value is None:
        _reject(key, f"is required ({what})")
    if not pattern.match(value):
        _reject(key, f"must be {what}")
    return value


def _or_default(value: _T | None, default: _T) -> _T:
    # Not `value or default`: an explicit 0 must be refused, not silently replaced.
    return default if value is None else value


def _choice(cfg: pulumi.Config, key: str, allowed: frozenset[str], default: str) -> str:
    value = cfg.get(key) or default
    if value not in allowed:
        _reject(key, f"must be one of {sorted(allowed)}")
    return value


def _https_url(cfg: pulumi.Config, key: str) -> str | None:
    value = cfg.get(key)
    if value is not None and not value.startswith("https://"):
        _reject(key, "must be an https:// URL")
    return value


def _maa_host(cfg: pulumi.Config) -> str:
    raw = cfg.get("maaEndpoint")
    if raw is None:
        _reject("maaEndpoint", "is required (the MAA instance host, e.g. sharedweu.weu.attest.azure.net)")
    host = raw.strip().removeprefix("https://").rstrip("/")
    if not _HOST.match(host):
        _reject("maaEndpoint", "must be a bare host or https://host")
    return host


def load_config() -> StackConfig:
    """Read the current stack's config; raise :class:`ConfigError` on anything missing or unsafe."""
    cfg = pulumi.Config(PROJECT)
    for key in sorted(FORBIDDEN_SECRET_KEYS):
        if cfg.get(key) is not None:
            _reject(key, "baseline secrets are sealed with `mcp-tee seal` after deploy, never put in stack config")
    stack = pulumi.get_stack()
    location = pulumi.Config("azure-native").get("location")
    if not location:
        raise ConfigError("azure-native:location is required")
    replicas = _or_default(cfg.get_int("replicas"), 1)
    if not 1 <= replicas <= MAX_REPLICAS:
        _reject("replicas", f"must be between 1 and {MAX_REPLICAS}")
    cpu = _or_default(cfg.get_float("cpu"), 1.0)
    memory_gb = _or_default(cfg.get_float("memoryGb"), 2.0)
    if cpu <= 0 or memory_gb <= 0:
        _reject("cpu", "cpu and memoryGb must be positive")
    return StackConfig(
        stack=stack,
        location=location,
        resource_group_name=cfg.get("resourceGroupName") or f"rg-{PROJECT}-{stack}",
        registry_name=_match(cfg, "registryName", _REGISTRY_NAME, "5-50 letters or digits"),
        vault_name=_match(cfg, "vaultName", _VAULT_NAME, "a Key Vault name (3-24 letters, digits, dashes)"),
        vault_dns_suffix=cfg.get("vaultDnsSuffix") or "vault.azure.net",
        maa_endpoint=_maa_host(cfg),
        skr_image=_match(cfg, "skrImage", _SKR_IMAGE, f"{SKR_REPOSITORY}[:tag]@sha256:<64 hex> (pinned by digest)"),
        image_context=cfg.get("imageContext") or ".",
        dockerfile=cfg.get("dockerfile") or "Dockerfile",
        image_repository=cfg.get("imageRepository") or PROJECT,
        image_builder=_choice(cfg, "imageBuilder", IMAGE_BUILDERS, "docker"),
        cce_policy_file=cfg.get("ccePolicyFile"),
        app_command=tuple(cfg.get_object("appCommand") or ()),
        replicas=replicas,
        dns_label_prefix=_match(cfg, "dnsLabelPrefix", _DNS_LABEL, "a lowercase DNS label", f"{PROJECT}-{stack}"),
        cpu=cpu,
        memory_gb=memory_gb,
        restart_policy=_choice(cfg, "restartPolicy", RESTART_POLICIES, "Always"),
        auth_issuer=_https_url(cfg, "mcpAuthIssuer"),
        auth_jwks_url=_https_url(cfg, "mcpAuthJwksUrl"),
        auth_audience=cfg.get("mcpAuthAudience"),
        audit_log=cfg.get("auditLog"),
    )
