"""Shared test harness: a throwaway Postgres, local upstream stand-ins, canary secrets, a server subprocess."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import tomli_w

from app.devstack.postgres import LocalPostgres
from app.devstack.standins import GitHubStandIn, WebhookSink
from app.devstack.threaded import ThreadedServer
from tests.support.stack import policy_document
from tests.support.canaries import CANARY_DB_PASSWORD, CANARY_GITHUB_TOKEN, CANARY_WEBHOOK_PATH
from tests.support.server_process import ServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres():
    """One cluster for the whole run, in a directory the unprivileged Postgres user can reach."""
    base = Path(tempfile.mkdtemp(prefix="mcp-tee-pg-"))
    base.chmod(0o755)
    cluster = LocalPostgres(base / "cluster")
    cluster.start()
    cluster.reader_dsn = cluster.provision_demo(reader_password=CANARY_DB_PASSWORD)
    cluster.admin_dsn = cluster.dsn("postgres", cluster.superuser_password)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def github_standin():
    standin = GitHubStandIn(tokens={CANARY_GITHUB_TOKEN})
    with ThreadedServer(standin.app) as server:
        standin.url = server.url
        yield standin


@pytest.fixture(scope="session")
def webhook_sink():
    sink = WebhookSink(path=CANARY_WEBHOOK_PATH)
    with ThreadedServer(sink.app) as server:
        sink.url = f"{server.url}{CANARY_WEBHOOK_PATH}"
        yield sink


@pytest.fixture(autouse=True)
def _reset_standins(request):
    """Faults and recordings never leak from one test into the next."""
    yield
    for name in ("github_standin", "webhook_sink"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


@pytest.fixture(scope="session")
def roomy_policy(tmp_path_factory) -> Path:
    """The packaged policy with quotas and breaker thresholds raised, so functional suites never trip them."""
    document = policy_document()
    document["global"].update(per_minute=1_000_000, burst=100_000)
    document["refusals"].update(per_principal_per_minute=1_000_000, burst=100_000, global_per_minute=1_000_000,
                                global_burst=100_000)
    document["sessions"].update(max_open_per_principal=100_000, opens_per_principal_per_minute=1_000_000,
                                burst=100_000)
    for upstream in document["upstreams"].values():
        upstream["breaker_failures"] = 100_000
    for tool in document["tools"].values():
        tool["quota"].update(per_principal_per_minute=1_000_000, burst=100_000)
    path = tmp_path_factory.mktemp("policy") / "capabilities.toml"
    path.write_text(tomli_w.dumps(document))
    return path


@pytest.fixture(scope="session")
def baseline_env(postgres, github_standin, webhook_sink, roomy_policy) -> dict[str, str]:
    """Env for a non-TEE server whose three secrets are canaries pointing at the stand-ins."""
    return {
        "MCP_CAPABILITY_POLICY": str(roomy_policy),
        "GITHUB_TOKEN": CANARY_GITHUB_TOKEN,
        "GITHUB_API_URL": github_standin.url,
        "DB_CONNECTION_STRING": postgres.reader_dsn,
        "WEBHOOK_URL": webhook_sink.url,
        "MCP_UPSTREAM_TIMEOUT_S": "2",
    }


@pytest.fixture(scope="session")
def server(baseline_env, tmp_path_factory):
    """`mcp-tee serve` as a real subprocess over streamable HTTP, shared by the e2e tests."""
    log_dir = tmp_path_factory.mktemp("server")
    process = ServerProcess({**baseline_env, "MCP_AUDIT_LOG": str(log_dir / "audit.jsonl")}, log_dir=log_dir)
    process.audit_path = log_dir / "audit.jsonl"
    process.start()
    yield process
    process.stop()


@pytest.fixture
def guard_parses(monkeypatch) -> list[str]:
    """Every SQL text the guard's memory hands to the real guard, in order (what it did not answer itself)."""
    from app.guards import admitted
    from app.guards.sql import guard_sql

    seen: list[str] = []

    def counting_guard(sql: str):
        seen.append(sql)
        return guard_sql(sql)

    monkeypatch.setattr(admitted, "guard_sql", counting_guard)
    return seen


def pytest_configure(config):
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.path.insert(0, str(REPO_ROOT))


# Emulator fixtures serve tests in attestation/, secrets/, emulator/, wire/, cli/ and agent/ alike.
from tests.support.emulator_fixtures import emulator, recording_server, shared_emulator, unseal_key_pem  # noqa: E402,F401
