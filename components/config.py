"""Reads and validates the stack configuration in one place, failing closed on anything unsafe.

Threat model: stack config is plaintext in `Pulumi.<stack>.yaml` and in CI logs. The baseline
secrets (GitHub token, DB connection string, webhook URL) may only arrive as Pulumi config
*secrets* (`pulumi config set --secret githubToken …`), which the engine keeps encrypted; a
plaintext value under those keys, or under their env-var spellings, is refused without being
echoed. Images (the SKR sidecar and the app's base image) must be pinned by digest because the CCE
policy measures them, and the confcom version and flags are pinned because they change the policy.
Anything the running group needs in order to start is required here, so a stack that could not
start fails at preview with a message naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, NoReturn, TypeVar

import pulumi
from pulumi.runtime.config import is_config_secret

from app.secrets import DB_CONNECTION_STRING, GITHUB_TOKEN, WEBHOOK_URL

PROJECT = "mcp-tee"
IMAGE_BUILDERS = frozenset({"docker", "acr-task"})
RESTART_POLICIES = frozenset({"Always", "OnFailure", "Never"})
MAX_REPLICAS = 20
# Stack config key (a Pulumi secret) -> Key Vault secret name the app unseals.
BASELINE_SECRET_KEYS: Mapping[str, str] = {
    "githubToken": GITHUB_TOKEN, "dbConnectionString": DB_CONNECTION_STRING, "webhookUrl": WEBHOOK_URL,
}
# The env-var spellings are a likely slip; refuse them so a value never sits there in plaintext.
FORBIDDEN_SECRET_KEYS = frozenset({"GITHUB_TOKEN", "DB_CONNECTION_STRING", "WEBHOOK_URL"})
# The issuer and JWKS come from the Entra application the program creates (components/resource_server.py).
RETIRED_AUTH_KEYS = frozenset({"mcpAuthIssuer", "mcpAuthJwksUrl"})
# Flags that only make the policy stricter; anything else (e.g. --debug-mode) is refused.
CONFCOM_ALLOWED_FLAGS = frozenset({"--disable-stdio"})
MIN_KEY_EXPIRY_DAYS, MAX_KEY_EXPIRY_DAYS = 30, 730
SKR_REPOSITORY = "mcr.microsoft.com/aci/skr"
_SKR_IMAGE = re.compile(r"^mcr\.microsoft\.com/aci/skr(:[\w.-]+)?@sha256:[0-9a-f]{64}$")
_BASE_IMAGE = re.compile(r"^[a-z0-9][a-z0-9./_-]*(:[\w.-]+)?@sha256:[0-9a-f]{64}$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_EPOCH = re.compile(r"^[0-9]{1,12}$")
_ROTATION = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_STORAGE_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_BLOB_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
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
        resource_group_name: The existing resource group everything goes into (the deployer's scope).
        registry_name: Azure Container Registry name (globally unique).
        vault_name: Key Vault name (globally unique, 3-24 characters).
        vault_dns_suffix: Key Vault DNS suffix; ``vault.azure.net`` in the public cloud.
        maa_endpoint: MAA instance host that the release policy pins.
        skr_image: The SKR sidecar image, pinned by digest.
        base_image: The app image's base, pinned by digest (build argument ``BASE_IMAGE``).
        source_date_epoch: Fixed timestamp of everything the build writes (``SOURCE_DATE_EPOCH``).
        image_context: Docker build context for the app image.
        dockerfile: Dockerfile path for the app image.
        image_repository: Repository name inside the registry.
        image_builder: ``docker`` (local buildx) or ``acr-task`` (``az acr build``).
        confcom_version: The exact `az confcom` extension version that generates the policy.
        confcom_flags: Extra `acipolicygen` flags (prod: ``--disable-stdio``).
        cce_policy_file: A pre-generated base64 CCE policy, instead of running confcom.
        app_command: Override of the app container's command; empty keeps the default serve command.
        replicas: Number of confidential container groups.
        dns_label_prefix: Prefix of each group's public DNS label.
        cpu: App container CPU cores.
        memory_gb: App container memory in GB.
        restart_policy: ``Always``, ``OnFailure`` or ``Never``.
        auth_audience: The MCP audience (Entra identifier URI); None derives it from the tenant.
        audit_log: Optional audit log target (a path, or ``-`` for stdout).
        audit_storage_account: Storage account of the audit sink.
        audit_container: Blob container of the audit sink.
        key_expiry_days: Lifetime of each release key.
        key_rotation: Rotation label mixed into the key name; change it to rotate without a new image.
        baseline_secrets: Key Vault secret name -> the Pulumi config secret holding its value.
    """

    stack: str
    location: str
    resource_group_name: str
    registry_name: str
    vault_name: str
    vault_dns_suffix: str
    maa_endpoint: str
    skr_image: str
    base_image: str
    source_date_epoch: str
    image_context: str
    dockerfile: str
    image_repository: str
    image_builder: str
    confcom_version: str
    confcom_flags: tuple[str, ...]
    cce_policy_file: str | None
    app_command: tuple[str, ...]
    replicas: int
    dns_label_prefix: str
    cpu: float
    memory_gb: float
    restart_policy: str
    auth_audience: str | None
    audit_log: str | None
    audit_storage_account: str
    audit_container: str
    key_expiry_days: int
    key_rotation: str
    baseline_secrets: Mapping[str, pulumi.Output[str]] = field(repr=False)

    @property
    def vault_host(self) -> str:
        """The vault's data-plane host, without scheme (the app's AKV_ENDPOINT)."""
        return f"{self.vault_name}.{self.vault_dns_suffix}"

    @property
    def stdio_disabled(self) -> bool:
        """Whether the CCE policy forbids stdio (then the audit stream leaves only through the sink)."""
        return "--disable-stdio" in self.confcom_flags


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


def _confcom_flags(cfg: pulumi.Config) -> tuple[str, ...]:
    flags = cfg.get_object("confcomFlags") or []
    if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
        _reject("confcomFlags", "must be a list of flags")
    unknown = sorted(set(flags) - CONFCOM_ALLOWED_FLAGS)
    if unknown:
        _reject("confcomFlags", f"may hold only {sorted(CONFCOM_ALLOWED_FLAGS)}, not {unknown}")
    return tuple(sorted(set(flags)))


def _baseline_secrets(cfg: pulumi.Config) -> dict[str, pulumi.Output[str]]:
    secrets = {}
    for key, vault_name in BASELINE_SECRET_KEYS.items():
        # `get_secret`, not `get`: the value is only ever handled as a secret Output here.
        value = cfg.get_secret(key)
        if value is None:
            _reject(key, f"is required: the app refuses to start without it (pulumi config set --secret {key})")
        if not is_config_secret(f"{PROJECT}:{key}"):
            # Fail closed: a plaintext value sits in Pulumi.<stack>.yaml and in every CI log.
            _reject(key, f"must be a secret (pulumi config set --secret {key})")
        secrets[vault_name] = value
    return secrets


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
            _reject(key, "baseline secrets go in as Pulumi secrets under githubToken, dbConnectionString, webhookUrl")
    for key in sorted(RETIRED_AUTH_KEYS):
        if cfg.get(key) is not None:
            _reject(key, "is derived from the Entra application the program creates; remove it")
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
    key_expiry_days = _or_default(cfg.get_int("keyExpiryDays"), 365)
    if not MIN_KEY_EXPIRY_DAYS <= key_expiry_days <= MAX_KEY_EXPIRY_DAYS:
        _reject("keyExpiryDays", f"must be between {MIN_KEY_EXPIRY_DAYS} and {MAX_KEY_EXPIRY_DAYS}")
    return StackConfig(
        stack=stack,
        location=location,
        resource_group_name=cfg.get("resourceGroupName") or f"rg-{PROJECT}-{stack}",
        registry_name=_match(cfg, "registryName", _REGISTRY_NAME, "5-50 letters or digits"),
        vault_name=_match(cfg, "vaultName", _VAULT_NAME, "a Key Vault name (3-24 letters, digits, dashes)"),
        vault_dns_suffix=cfg.get("vaultDnsSuffix") or "vault.azure.net",
        maa_endpoint=_maa_host(cfg),
        skr_image=_match(cfg, "skrImage", _SKR_IMAGE, f"{SKR_REPOSITORY}[:tag]@sha256:<64 hex> (pinned by digest)"),
        base_image=_match(cfg, "baseImage", _BASE_IMAGE, "an image pinned by digest (name[:tag]@sha256:<64 hex>)"),
        source_date_epoch=_match(cfg, "sourceDateEpoch", _EPOCH, "Unix seconds (fixed, e.g. 1767225600)"),
        image_context=cfg.get("imageContext") or ".",
        dockerfile=cfg.get("dockerfile") or "Dockerfile",
        image_repository=cfg.get("imageRepository") or PROJECT,
        image_builder=_choice(cfg, "imageBuilder", IMAGE_BUILDERS, "docker"),
        confcom_version=_match(cfg, "confcomVersion", _VERSION, "the exact confcom extension version (e.g. 1.4.3)"),
        confcom_flags=_confcom_flags(cfg),
        cce_policy_file=cfg.get("ccePolicyFile"),
        app_command=tuple(cfg.get_object("appCommand") or ()),
        replicas=replicas,
        dns_label_prefix=_match(cfg, "dnsLabelPrefix", _DNS_LABEL, "a lowercase DNS label", f"{PROJECT}-{stack}"),
        cpu=cpu,
        memory_gb=memory_gb,
        restart_policy=_choice(cfg, "restartPolicy", RESTART_POLICIES, "Always"),
        auth_audience=_https_url(cfg, "mcpAuthAudience"),
        audit_log=cfg.get("auditLog"),
        audit_storage_account=_match(cfg, "auditStorageAccount", _STORAGE_ACCOUNT, "3-24 lowercase letters or digits"),
        audit_container=_match(cfg, "auditContainer", _BLOB_CONTAINER, "a blob container name", "audit"),
        key_expiry_days=key_expiry_days,
        key_rotation=_match(cfg, "keyRotation", _ROTATION, "1-32 letters, digits, dots, dashes", "1"),
        baseline_secrets=_baseline_secrets(cfg),
    )
