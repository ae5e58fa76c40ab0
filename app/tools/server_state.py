"""What the tools of one running server share: settings, secrets, upstream clients, sessions, the caller."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from app.audit.redaction import Redactor
from app.auth.principal import PrincipalProvider
from app.config import Settings
from app.secrets.bundle import SecretBundle
from app.sessions import SessionRegistry
from app.upstreams.github import GitHubClient
from app.upstreams.postgres import ReadOnlyDatabase
from app.upstreams.webhook import WebhookClient


class AttestationProvider(Protocol):
    """The seam between `attestation_status` and whatever proves where we run."""

    async def evidence(self, *, nonce: str | None, session_id: str | None, tools_digest: str) -> dict[str, Any]:
        """Fields to merge into the status report; `running_in_tee` must come from verified evidence."""
        ...


class NotAttested:
    """Non-TEE mode: there is no evidence, so the server says so instead of guessing."""

    async def evidence(self, *, nonce: str | None, session_id: str | None, tools_digest: str) -> dict[str, Any]:
        return {
            "running_in_tee": False,
            "tee_type": "none",
            "attestation": None,
            "attestation_note": "non-TEE mode: no hardware evidence; do not send this server user credentials",
        }


@dataclass
class ServerState:
    """Shared by the tools of one server instance; built once, by `app.server.assembly.build_state`."""

    settings: Settings
    secrets: SecretBundle
    github: GitHubClient | None = None
    database: ReadOnlyDatabase | None = None
    webhook: WebhookClient | None = None
    disabled: dict[str, str] = field(default_factory=dict)
    attestation: AttestationProvider = field(default_factory=NotAttested)
    status_extras: list[Callable[[], dict[str, Any]]] = field(default_factory=list)
    # A signed audit checkpoint at most N seconds old (written if none is); only attestation_status asks.
    audit_head: Callable[[float], Awaitable[dict[str, Any]]] | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    redactor: Redactor = field(default_factory=Redactor)  # layer-2 tokens are added to it
    # Who is calling; with auth on, a call without a verified principal is denied.
    principals: PrincipalProvider = field(default_factory=lambda: PrincipalProvider(auth_enabled=True))
    delegation: Any = None  # app.delegation.service.DelegationService: mints, revokes, verifies capabilities
    started_at: float = field(default_factory=time.time)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()
