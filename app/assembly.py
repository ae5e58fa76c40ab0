"""Wires a runnable server: policy → secrets → redaction → audit → capability middleware → tools → HTTP."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastmcp import FastMCP

from app.capabilities.audit_log import AuditLog, AuditSigner
from app.capabilities.auth import protect_app
from app.capabilities.breakers import Breakers
from app.capabilities.policy import CapabilityPolicy, PolicyError, load_policy
from app.capabilities.principal import PrincipalProvider, set_default_principal_provider
from app.capabilities.redaction import RedactingFilter, Redactor, attach_log_filter, install_log_redaction
from app.capabilities.stack import build_capability_middleware
from app.attestation.provider import TeeAttestation
from app.config import ConfigError, Settings
from app.secrets.bundle import SecretBundle
from app.secrets.sealed import TeeStartup
from app.sessions import ForgetEndedSessions, SessionRegistry
from app.server import MCP_PATH, build_server, build_state, confirmation_gate
from app.state import ServerState


@dataclass
class AssembledServer:
    """A server ready to run, plus what must be closed when it stops (the audit log last)."""

    mcp: FastMCP
    state: ServerState
    policy: CapabilityPolicy
    audit: AuditLog
    redactor: Redactor
    log_filter: RedactingFilter

    _closed: bool = False

    def http_app(self):
        """The ASGI app: MCP on /mcp and /healthz, behind bearer auth when it is configured.

        Closing happens in the app's lifespan shutdown: uvicorn re-raises SIGTERM once it
        has drained, so code after `serve()` would never run.
        """
        app = self.mcp.http_app(path=MCP_PATH)
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
        auth = self.state.settings.auth
        if auth is None:
            return app
        # Advertise, and accept tokens for, exactly the scopes the capability policy uses.
        return protect_app(app, dataclasses.replace(auth, scopes_supported=self.policy.all_scopes))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.state.aclose()
        finally:
            self.audit.close()  # writes the final signed checkpoint and flushes every line


def load_capability_policy(settings: Settings) -> CapabilityPolicy:
    try:
        return load_policy(settings.capability_policy)
    except PolicyError as exc:
        raise ConfigError(f"invalid capability policy: {exc}") from None


def assemble(settings: Settings, secrets: SecretBundle, *, audit_key: Ed25519PrivateKey | None = None,
             tee: TeeStartup | None = None) -> AssembledServer:
    """Build every layer. In TEE mode `audit_key` is derived from the released key; else per process."""
    policy = load_capability_policy(settings)
    redactor = Redactor(secrets.plaintexts())
    log_filter = install_log_redaction(redactor)
    signer = AuditSigner(audit_key or Ed25519PrivateKey.generate())
    audit = AuditLog(settings.audit_log, signer)
    breakers = Breakers(policy.upstreams)
    principals = PrincipalProvider(auth_enabled=settings.auth is not None)
    set_default_principal_provider(principals)
    state = build_state(settings, secrets)
    state.redactor = redactor
    state.sessions = SessionRegistry(on_forget=redactor.remove_secret)
    if tee is not None:
        state.attestation = TeeAttestation(tee.runtime, state.sessions, tee.issuer, signer.public_key_b64())
    state.status_extras.append(lambda: {"breakers": breakers.snapshot(), "audit_public_key": signer.public_key_b64()})
    middleware = build_capability_middleware(
        policy, audit=audit, redactor=redactor, breakers=breakers, principal_provider=principals,
        confirmation=confirmation_gate(policy, settings.confirmation_timeout_s),
    )
    mcp = build_server(state, capability_middleware=middleware)
    return AssembledServer(mcp=mcp, state=state, policy=policy, audit=audit, redactor=redactor, log_filter=log_filter)
