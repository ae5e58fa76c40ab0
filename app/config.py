"""Server settings: read once from the environment and CLI flags, validated in one place."""

from __future__ import annotations

import math
import os
from pathlib import Path
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

from app.auth.settings import AuthConfigError, AuthSettings
from app.telemetry.setup import TelemetryConfigError, TelemetryPlan, plan_telemetry
from app.urls import UntrustedUrl, require_https_or_loopback

DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_PORT = 8080
# How long a request body may take to arrive, plus what steady progress earns (app/server/http_limits.py).
DEFAULT_REQUEST_BODY_TIMEOUT_S = 30.0
DEFAULT_LOCAL_SCOPES = "mcp:read,mcp:write"
TEE_MODE = "tee"
ENV_MODE = "env"
_MODES = frozenset({ENV_MODE, TEE_MODE})
# Every variable a TEE deployment pins into the measured template (components/containers.py; a test
# keeps the two in step). confcom lets the host start the container without any of them
# (`required: false`, `allow_environment_variable_dropping`), and several have a harmless-looking
# default here (auth off, audit to stdout), so a deployed server refuses to start when one is
# missing. The deployed command asks for the check (`--require-pinned-env`): argv, unlike env, is
# enforced exactly by the policy and cannot be dropped.
TEE_PINNED_ENV = frozenset({
    "MCP_TEE_MODE",
    # attestation and key release
    "SKR_ENDPOINT", "MAA_ENDPOINT", "AKV_ENDPOINT", "SKR_KEY_NAME", "IDENTITY_CLIENT_ID",
    # inbound auth
    "MCP_AUTH_ISSUER", "MCP_AUTH_JWKS_URL", "MCP_AUTH_AUDIENCE",
    # the audit stream off the box
    "MCP_AUDIT_SINK", "MCP_AUDIT_BLOB_ACCOUNT_URL", "MCP_AUDIT_BLOB_CONTAINER", "MCP_AUDIT_BLOB_PREFIX",
})
FILE_SINK, BLOB_SINK = "file", "blob"
AUDIT_SINKS = frozenset({FILE_SINK, BLOB_SINK})
DEFAULT_AUDIT_BLOB_PREFIX = "mcp-tee"
DEFAULT_AUDIT_BUFFER_RECORDS = 10_000
# What the blob sink cannot run without; a missing one stops start-up (confcom lets env vars drop).
AUDIT_BLOB_REQUIRED = ("MCP_AUDIT_BLOB_ACCOUNT_URL", "MCP_AUDIT_BLOB_CONTAINER", "IDENTITY_CLIENT_ID")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


@dataclass(frozen=True)
class AuditBlobSettings:
    """Where `MCP_AUDIT_SINK=blob` ships the audit chain, and as whom."""

    account_url: str
    container: str
    identity_client_id: str
    prefix: str = DEFAULT_AUDIT_BLOB_PREFIX
    ca_file: str | None = None
    buffer_records: int = DEFAULT_AUDIT_BUFFER_RECORDS


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to start. Secrets are *not* held here."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    transport: str = "streamable-http"
    mode: str = ENV_MODE
    github_api_url: str = DEFAULT_GITHUB_API_URL
    require_secrets: bool = True
    auth: AuthSettings | None = None
    audit_log: str = "-"
    audit_blob: AuditBlobSettings | None = None
    telemetry: TelemetryPlan = TelemetryPlan(traces=False, metrics=False)
    capability_policy: str | None = None
    upstream_timeout_s: float = 10.0
    confirmation_timeout_s: float = 120.0
    db_statement_timeout_ms: int = 5000
    attestation_per_second: float = 5.0
    attestation_per_source_per_minute: float = 30.0
    request_body_timeout_s: float = DEFAULT_REQUEST_BODY_TIMEOUT_S
    # Scopes of the local principal, who is every caller when auth is off (loopback, or stdio).
    local_scopes: frozenset[str] = frozenset(DEFAULT_LOCAL_SCOPES.split(","))
    capability_root_dir: str | None = None  # dev only: keep the capability root across restarts (NOT A TEE)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def tee_mode(self) -> bool:
        return self.mode == TEE_MODE


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive finite number, got {raw!r}")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name} must be a positive whole number, got {raw!r}")
    return int(raw)


def _audit_blob(env: Mapping[str, str]) -> AuditBlobSettings | None:
    sink = (env.get("MCP_AUDIT_SINK") or FILE_SINK).lower()
    if sink not in AUDIT_SINKS:
        raise ConfigError(f"MCP_AUDIT_SINK must be one of {sorted(AUDIT_SINKS)}, got {sink!r}")
    if sink == FILE_SINK:
        return None
    missing = [name for name in AUDIT_BLOB_REQUIRED if not env.get(name)]
    if missing:
        raise ConfigError(f"MCP_AUDIT_SINK=blob needs {', '.join(missing)}")
    account_url = env["MCP_AUDIT_BLOB_ACCOUNT_URL"].rstrip("/")
    parts = urlsplit(account_url)
    if "?" in account_url or "#" in account_url or "@" in parts.netloc:
        # Fail closed: a query (a SAS token) or user:password@ would be a credential, and the URL is logged at start-up.
        raise ConfigError("MCP_AUDIT_BLOB_ACCOUNT_URL must be the bare account URL, without credentials, a query or "
                          "a fragment (the server authenticates with the managed identity, never a SAS token)")
    try:
        require_https_or_loopback(account_url, "MCP_AUDIT_BLOB_ACCOUNT_URL")
    except UntrustedUrl as exc:
        raise ConfigError(str(exc)) from None
    return AuditBlobSettings(
        account_url=account_url, container=env["MCP_AUDIT_BLOB_CONTAINER"],
        identity_client_id=env["IDENTITY_CLIENT_ID"],
        prefix=(env.get("MCP_AUDIT_BLOB_PREFIX") or DEFAULT_AUDIT_BLOB_PREFIX).strip("/"),
        ca_file=env.get("MCP_AUDIT_BLOB_CA_FILE") or None,
        buffer_records=_positive_int(env, "MCP_AUDIT_BUFFER_RECORDS", DEFAULT_AUDIT_BUFFER_RECORDS))


def _telemetry(env: Mapping[str, str]) -> TelemetryPlan:
    try:
        return plan_telemetry(env)
    except TelemetryConfigError as exc:
        raise ConfigError(str(exc)) from None


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    transport: str | None = None,
    tee: bool | None = None,
    require_secrets: bool | None = None,
    require_pinned_env: bool = False,
) -> Settings:
    """Build validated settings from `env` (default: os.environ) and explicit CLI overrides.

    `require_pinned_env` (a deployed group) refuses to start unless every `TEE_PINNED_ENV` variable is set.
    """
    env = os.environ if env is None else env
    mode = TEE_MODE if tee else (env.get("MCP_TEE_MODE") or ENV_MODE).lower()
    if mode not in _MODES:
        raise ConfigError(f"MCP_TEE_MODE must be one of {sorted(_MODES)}, got {mode!r}")
    if require_pinned_env:
        refuse_dropped_env(env, mode)
    github_api_url = (env.get("GITHUB_API_URL") or DEFAULT_GITHUB_API_URL).rstrip("/")
    try:
        # The token rides on every request: plain http only to this machine (stand-ins, tests).
        require_https_or_loopback(github_api_url, "GITHUB_API_URL")
    except UntrustedUrl:
        raise ConfigError("GITHUB_API_URL must be https (http only on loopback)") from None
    settings = Settings(
        host=host or "127.0.0.1",
        port=port if port is not None else DEFAULT_PORT,
        transport=transport or "streamable-http",
        mode=mode,
        github_api_url=github_api_url,
        require_secrets=True if require_secrets is None else require_secrets,
        auth=_auth_settings(env),
        audit_log=env.get("MCP_AUDIT_LOG") or "-",
        audit_blob=_audit_blob(env),
        telemetry=_telemetry(env),
        capability_policy=env.get("MCP_CAPABILITY_POLICY") or None,
        upstream_timeout_s=_float(env, "MCP_UPSTREAM_TIMEOUT_S", 10.0),
        confirmation_timeout_s=_float(env, "MCP_CONFIRMATION_TIMEOUT_S", 120.0),
        attestation_per_second=_float(env, "MCP_ATTESTATION_PER_SECOND", 5.0),
        attestation_per_source_per_minute=_float(env, "MCP_ATTESTATION_PER_SOURCE_PER_MINUTE", 30.0),
        request_body_timeout_s=_float(env, "MCP_REQUEST_BODY_TIMEOUT_S", DEFAULT_REQUEST_BODY_TIMEOUT_S),
        local_scopes=frozenset(scope.strip() for scope in (env.get("MCP_LOCAL_SCOPES") or DEFAULT_LOCAL_SCOPES)
                               .split(",") if scope.strip()),
        capability_root_dir=env.get("MCP_CAPABILITY_ROOT_DIR") or None,
    )
    if settings.tee_mode and settings.capability_root_dir:
        # Fail closed: in a TEE the capability root comes only from the attested key release.
        raise ConfigError("MCP_CAPABILITY_ROOT_DIR is for development; in TEE mode the capability root is derived "
                          "from the released key")
    if settings.transport not in ("streamable-http", "stdio"):
        raise ConfigError("--transport must be streamable-http or stdio")
    if settings.transport == "stdio" and settings.audit_blob is None and settings.audit_log == "-":
        raise ConfigError("--transport stdio owns stdout: set MCP_AUDIT_LOG to a file path")
    if settings.transport == "stdio" and settings.auth is not None:
        # stdio carries no bearer token: with auth on, every call would be refused without a word.
        raise ConfigError("--transport stdio is local and single-user and carries no bearer token: unset "
                          "MCP_AUTH_ISSUER; calls then run as the local principal with MCP_LOCAL_SCOPES")
    return settings


def refuse_dropped_env(env: Mapping[str, str], mode: str) -> None:
    """Fail closed when a deployed group lacks a variable its policy pinned: the host dropped it."""
    if mode != TEE_MODE:
        raise ConfigError("--require-pinned-env is for TEE deployments: add --tee")
    missing = sorted(name for name in TEE_PINNED_ENV if not env.get(name))
    if missing:
        raise ConfigError(f"refusing to start: the deployment pins {', '.join(missing)} but the environment lacks "
                          "it (the host may drop pinned variables)")


def _auth_settings(env: Mapping[str, str]) -> AuthSettings | None:
    dev_dir = env.get("MCP_DEV_ISSUER_DIR")
    try:
        return AuthSettings.from_env(env, dev_state_dir=Path(dev_dir) if dev_dir else None)
    except AuthConfigError as exc:
        raise ConfigError(str(exc)) from None
