"""Fixtures for the agent tests: one emulator and one `mcp-tee serve` in TEE mode for the whole directory."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.agent.trust import TrustPolicy
from app.emulator.server import RunningEmulator, start_emulator
from tests.agent.proxy import RewritingProxy
from tests.support.canaries import CANARY_GITHUB_TOKEN
from tests.support.server_process import ServerProcess
from tests.support.tee import tee_endpoints

CLIENT_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
CCE_POLICY = base64.b64encode(b'package policy\napi_version := "0.10.0"\n# mcp-tee agent tests\n').decode()
# The user's own token (layer 2): it must reach GitHub and nothing else.
CANARY_USER_TOKEN = "ghp_CANARYuserSCOPEDtoken00000000000000042"


@dataclass
class TeeStack:
    """A TEE-mode server, the emulator behind it, and where its logs and audit trail go."""

    emulator: RunningEmulator
    server: ServerProcess
    audit_path: Path

    @property
    def trust(self) -> TrustPolicy:
        """What a correctly configured agent trusts for this stack."""
        return TrustPolicy.dev(self.emulator.issuer, self.emulator.hostdata)

    def logs(self) -> list[str]:
        return [self.server.output(), self.audit_path.read_text() if self.audit_path.exists() else ""]


def _tee_env(emulator: RunningEmulator, github_url: str, policy: Path, audit_path: Path) -> dict[str, str]:
    """Endpoints and names only; only the GitHub token is sealed, so the other tools stay off."""
    return {
        **tee_endpoints(emulator, CLIENT_ID),
        "MCP_CAPABILITY_POLICY": str(policy),
        "MCP_AUDIT_LOG": str(audit_path),
        "GITHUB_API_URL": github_url,
        "MCP_UPSTREAM_TIMEOUT_S": "2",
    }


@pytest.fixture(scope="package")
def tee_stack(github_standin, roomy_policy, tmp_path_factory) -> Iterator[TeeStack]:
    github_standin.tokens.add(CANARY_USER_TOKEN)
    log_dir = tmp_path_factory.mktemp("agent-tee")
    audit_path = log_dir / "audit.jsonl"
    with start_emulator(CCE_POLICY, identity_client_id=CLIENT_ID) as emulator:
        emulator.put_sealed_secret("github-token", CANARY_GITHUB_TOKEN.encode())
        server = ServerProcess(_tee_env(emulator, github_standin.url, roomy_policy, audit_path), log_dir=log_dir,
                               args=["--no-require-secrets"]).start()
        try:
            yield TeeStack(emulator, server, audit_path)
        finally:
            server.stop()
            github_standin.tokens.discard(CANARY_USER_TOKEN)


@pytest.fixture(scope="package")
def plain_server(roomy_policy, tmp_path_factory) -> Iterator[ServerProcess]:
    """A non-TEE server (no secrets, so only `attestation_status`): it must be reported as not attested."""
    log_dir = tmp_path_factory.mktemp("agent-plain")
    server = ServerProcess({"MCP_CAPABILITY_POLICY": str(roomy_policy)}, log_dir=log_dir).start()
    yield server
    server.stop()


@pytest.fixture
def proxy(tee_stack, monkeypatch) -> RewritingProxy:
    """Tampering with what the agent receives from the TEE server, past TLS (defense in depth)."""
    return RewritingProxy(tee_stack.server.url).install(monkeypatch)
