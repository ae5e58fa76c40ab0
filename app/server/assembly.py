"""Wires a runnable server in one place: policy → secrets → redaction → audit → layers → tools → HTTP.

`build_state` is the only place a `ServerState` is built, and `assemble` the only place the layers
are composed, so the order that runs in production is the order the tests exercise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastmcp import FastMCP

from app.attestation.channel import TlsChannel
from app.attestation.evidence import TeeAttestation
from app.audit.blob_sink import BlobAuditSink
from app.audit.blob_store import AuditBlobStore, AuditStoreError
from app.audit.log import AuditLog, AuditLogClosed
from app.audit.signing import AuditSigner
from app.audit.redaction import RedactingFilter, Redactor, attach_log_filter, install_log_redaction
from app.auth.principal import PrincipalProvider
from app.auth.resource_server import BearerTokenVerifier, HttpRefusal, protect_app
from app.capability_policy import CapabilityPolicy, PolicyError, load_policy
from app.config import ConfigError, Settings
from app.delegation.authorize import CapabilityGate
from app.delegation.keys import SOURCE_TEE, CapabilityRoot
from app.delegation.ledger import CapabilityLedger
from app.delegation.service import DelegationService
from app.middleware.audit import record_http_refusal
from app.middleware.breakers import BREAKER_LEVELS, Breakers
from app.middleware.stack import build_middleware
from app.secrets import DB_CONNECTION_STRING, GITHUB_TOKEN, SECRET_ENV_VARS, WEBHOOK_URL
from app.secrets.bundle import SecretBundle
from app.secrets.tee_release import TeeStartup
from app.server.attested_channel import serve_attested_channel
from app.server.mcp_app import MCP_PATH, build_mcp
from app.server.session_admission import SESSION_IDLE_TIMEOUT_S, SessionAdmission
from app.server.session_end import ForgetEndedSessions
from app.sessions import SessionRegistry
from app.telemetry.instruments import instruments
from app.telemetry.propagation import TraceContextMiddleware
from app.telemetry.setup import TelemetryHandle, configure_telemetry
from app.tools.catalog import TOOL_SPECS
from app.tools.spec import ToolSpec
from app.tools.server_state import ServerState
from app.upstreams.github import GitHubClient
from app.upstreams.postgres import POOL_MAX_SIZE, ReadOnlyDatabase
from app.upstreams.webhook import WebhookClient

logger = logging.getLogger(__name__)


@dataclass
class AssembledServer:
    """A server ready to run, plus what must be closed when it stops (the audit log last)."""

    mcp: FastMCP
    state: ServerState
    policy: CapabilityPolicy
    audit: AuditLog
    redactor: Redactor
    log_filter: RedactingFilter
    telemetry: TelemetryHandle | None = None

    _closed: bool = False

    def http_app(self):
        """The ASGI app: MCP on /mcp and /healthz, behind bearer auth when it is configured.

        Closing happens in the app's lifespan shutdown: uvicorn re-raises SIGTERM once it
        has drained, so code after `serve()` would never run.
        """
        app = self.mcp.http_app(path=MCP_PATH, session_idle_timeout=SESSION_IDLE_TIMEOUT_S)
        mcp_lifespan = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(starlette_app):
            attach_log_filter(self.log_filter)  # uvicorn has configured its own handlers by now
            async with mcp_lifespan(starlette_app) as lifespan_state:
                try:
                    yield lifespan_state
                finally:
                    await self.aclose()

        app.router.lifespan_context = lifespan
        app = ForgetEndedSessions(app, self.state.sessions, MCP_PATH)
        app = SessionAdmission(app, self.policy.sessions, MCP_PATH, on_refusal=self.record_refusal)
        auth = self.state.settings.auth
        if auth is not None:
            # Advertise, and accept tokens for, exactly the scopes the capability policy uses.
            auth = dataclasses.replace(auth, scopes_supported=self.policy.all_scopes)
            verifier = BearerTokenVerifier(auth, capabilities=self.state.delegation.principal)
            app = protect_app(app, auth, verifier, on_refusal=self.record_refusal)
        return TraceContextMiddleware(app) if self.telemetry is not None else app

    def record_refusal(self, refusal: HttpRefusal) -> None:
        """Audit a request refused before MCP saw it (auth, session admission, the listener's deadlines).

        A refusal in the moment between the final checkpoint and the listener's close can no longer
        join the chain; it is logged (without the token, like every refusal) instead of raising.
        """
        try:
            record_http_refusal(self.audit, self.redactor, refusal)
        except AuditLogClosed as stopped:
            logger.warning("refusal not audited (%s): %d %s (%s)",
                           stopped, refusal.status, refusal.path[:200], refusal.layer)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.state.aclose()
        finally:
            self.audit.close()  # writes the final signed checkpoint and flushes (or ships) every line
            if self.telemetry is not None:
                self.telemetry.shutdown()


def load_capability_policy(settings: Settings) -> CapabilityPolicy:
    try:
        return load_policy(settings.capability_policy)
    except PolicyError as exc:
        raise ConfigError(f"invalid capability policy: {exc}") from None


def open_audit_log(settings: Settings, signer: AuditSigner) -> AuditLog:
    """The file/stdout log, or the blob store through the managed identity (`MCP_AUDIT_SINK=blob`)."""
    blob = settings.audit_blob
    if blob is None:
        return AuditLog(settings.audit_log, signer)
    from azure.identity import ManagedIdentityCredential

    store = AuditBlobStore(blob.account_url, blob.container, blob.prefix,
                           ManagedIdentityCredential(client_id=blob.identity_client_id), connection_verify=blob.ca_file)
    try:
        return AuditLog(BlobAuditSink(store, signer, capacity=blob.buffer_records), signer)
    except AuditStoreError as exc:
        # Fail closed: without the stored chain's head the server cannot continue the trail.
        store.close()
        raise ConfigError(f"{exc}; the server does not start without its audit trail") from None


def _observe(breakers: Breakers, state: ServerState, audit: AuditLog) -> None:
    """Gauges read at each metric export: breaker states, pool usage, the audit backlog."""
    meters = instruments()
    meters.gauge("mcp_tee.breaker.state", "0 closed, 1 half-open, 2 open",
                 lambda: [(BREAKER_LEVELS[snapshot["state"]], {"mcp_tee.upstream": name})
                          for name, snapshot in breakers.snapshot().items()])
    if state.database is not None:
        database = state.database
        meters.gauge("mcp_tee.db.pool.connections", "Postgres pool size and idle connections",
                     lambda: [(value, {"mcp_tee.pool.state": key.removeprefix("pool_")})
                              for key, value in database.stats().items()], unit="{connection}")
    meters.gauge("mcp_tee.audit.buffered", "Audit lines waiting for the store",
                 lambda: [(audit.buffered(), {})], unit="{line}")


def build_state(settings: Settings, secrets: SecretBundle, specs: tuple[ToolSpec, ...] = TOOL_SPECS, *,
                db_pool_size: int = POOL_MAX_SIZE) -> ServerState:
    """Create upstream clients only for the secrets we hold, and say why the other tools are off."""
    state = ServerState(settings=settings, secrets=secrets,
                        principals=PrincipalProvider(auth_enabled=settings.auth is not None,
                                                   local_scopes=settings.local_scopes))
    if secrets.get(GITHUB_TOKEN):
        state.github = GitHubClient(settings.github_api_url, timeout_s=settings.upstream_timeout_s)
        state.closers.append(state.github.aclose)
    if secrets.get(DB_CONNECTION_STRING):
        state.database = ReadOnlyDatabase(
            secrets.get(DB_CONNECTION_STRING), statement_timeout_ms=settings.db_statement_timeout_ms,
            pool_size=db_pool_size,
        )
        state.closers.append(state.database.close)
    if secrets.get(WEBHOOK_URL):
        state.webhook = WebhookClient(secrets.get(WEBHOOK_URL), timeout_s=settings.upstream_timeout_s)
        state.closers.append(state.webhook.aclose)
    for spec in specs:
        if spec.requires_secret is not None and not secrets.get(spec.requires_secret):
            state.disabled[spec.name] = _disabled_reason(spec.requires_secret, secrets)
    return state


def _disabled_reason(secret: str, secrets: SecretBundle) -> str:
    why = secrets.failures.get(secret) or f"{secret} is not available"
    if secrets.source == "env":
        return f"{why}; set {SECRET_ENV_VARS[secret]} to enable it"
    return why


def capability_root(settings: Settings, tee: TeeStartup | None) -> CapabilityRoot:
    """The capability root: derived from the released key in a TEE, else per process or from the dev state dir."""
    if tee is not None:
        if not tee.capability_root_seed:
            # Fail closed: an attested server must not bind a per-process root it calls NOT A TEE.
            raise ConfigError("TEE start-up released no capability root seed")
        return CapabilityRoot.from_seed(tee.capability_root_seed, SOURCE_TEE)
    root = (CapabilityRoot.from_dev_state_dir(Path(settings.capability_root_dir)) if settings.capability_root_dir
            else CapabilityRoot.per_process())
    logger.warning("capability root: %s", root.source)
    return root


def assemble(settings: Settings, secrets: SecretBundle, *, audit_key: Ed25519PrivateKey | None = None,
             tee: TeeStartup | None = None, channel: TlsChannel | None = None,
             specs: tuple[ToolSpec, ...] = TOOL_SPECS) -> AssembledServer:
    """Build every layer. In TEE mode `audit_key` is derived from the released key; else per process.

    In TEE mode ``channel`` is the TLS identity born in this process; every attestation binds its key.
    """
    policy = load_capability_policy(settings)
    redactor = Redactor(secrets.plaintexts())
    log_filter = install_log_redaction(redactor)
    telemetry = configure_telemetry(settings.telemetry, redactor)
    signer = AuditSigner(audit_key or Ed25519PrivateKey.generate())
    audit = open_audit_log(settings, signer)
    breakers = Breakers(policy.upstreams)
    postgres = policy.upstreams.get("postgres")
    # As many connections as concurrency slots: the fair per-principal cap binds, never the pool.
    state = build_state(settings, secrets, specs, db_pool_size=postgres.max_concurrency if postgres else POOL_MAX_SIZE)
    state.redactor = redactor
    state.sessions = SessionRegistry(on_forget=redactor.remove_secret)
    state.delegation = DelegationService(capability_root(settings, tee), policy, CapabilityLedger())
    if tee is not None:
        if channel is None:
            raise ConfigError("TEE mode serves only over its attested TLS channel")  # Fail closed.
        state.attestation = TeeAttestation(tee.runtime, state.sessions, tee.issuer, signer.public_key_b64(),
                                           channel.spki_sha256, state.delegation.root.public_key_b64)
    state.status_extras.append(lambda: {"breakers": breakers.snapshot(), "audit_public_key": signer.public_key_b64()})
    state.audit_head = audit.signed_head
    state.status_extras.append(state.delegation.status)
    if settings.telemetry.metrics:
        _observe(breakers, state, audit)
    middleware = build_middleware(policy, specs, audit=audit, redactor=redactor, breakers=breakers,
                                  principals=state.principals, confirmation_timeout_s=settings.confirmation_timeout_s,
                                  delegation=CapabilityGate(state.delegation.ledger),
                                  telemetry=telemetry is not None)
    mcp = build_mcp(state, specs, middleware=middleware)
    if isinstance(state.attestation, TeeAttestation):
        serve_attested_channel(mcp, state.attestation, settings)
    return AssembledServer(mcp=mcp, state=state, policy=policy, audit=audit, redactor=redactor, log_filter=log_filter,
                           telemetry=telemetry)
