"""A real server process with `MCP_AUDIT_SINK=blob`: records reach Azurite in order through the managed
identity, survive a restart, and `mcp-tee audit verify` reads them back from the store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.audit.batch_seal import is_seal
from app.audit.blob_store import AuditBlobStore
from app.audit.store_verify import verify_audit_store
from app.audit.verify import load_public_key
from tests.audit.conftest import make_container
from tests.support.mcp_client import mcp_session
from tests.support.server_process import ServerProcess

PREFIX = "mcp-tee"


@pytest.fixture
def blob_env(baseline_env, azurite, identity, credential) -> dict[str, str]:
    return {**baseline_env, **identity.env(), "MCP_AUDIT_SINK": "blob",
            "MCP_AUDIT_BLOB_ACCOUNT_URL": azurite.account_url,
            "MCP_AUDIT_BLOB_CONTAINER": make_container(azurite, credential),
            "MCP_AUDIT_BLOB_CA_FILE": azurite.ca_file}


async def _run_calls(env: dict[str, str], log_dir, queries: list[str]) -> str:
    """Start a server, make one query per entry, stop it; return its audit public key."""
    server = ServerProcess(env, log_dir=log_dir)
    server.start()
    try:
        async with mcp_session(server.url) as session:
            status = await session.call_tool("attestation_status", {})
            for sql in queries:
                await session.call_tool("query_database", {"sql": sql})
    finally:
        server.stop()  # SIGTERM: the lifespan shutdown ships the final checkpoint
    assert '"type":"call"' not in server.output()  # the audit trail went to the store, not stdout
    return status.structured_content["audit_public_key"]


async def test_records_arrive_in_order_survive_a_restart_and_verify_from_the_store(blob_env, tmp_path, azurite,
                                                                                   credential, identity):
    first_key = await _run_calls(blob_env, tmp_path, ["SELECT 1", "SELECT 2"])
    second_key = await _run_calls(blob_env, tmp_path, ["SELECT 3"])
    assert identity.client_id in identity.requests

    store = AuditBlobStore(azurite.account_url, blob_env["MCP_AUDIT_BLOB_CONTAINER"], PREFIX, credential,
                           connection_verify=azurite.ca_file)
    records = [json.loads(line) for name in store.names() for line in store.read(name).split(b"\n")
               if line and not is_seal(line)]
    calls = [record["tool"] for record in records if record.get("type") == "call"]
    assert calls == ["attestation_status", "query_database", "query_database",
                     "attestation_status", "query_database"]
    assert [record["seq"] for record in records] == list(range(len(records)))

    verify = [sys.executable, "-m", "app.cli", "audit", "verify",
              "--blob-account-url", azurite.account_url, "--blob-container", blob_env["MCP_AUDIT_BLOB_CONTAINER"],
              "--ca-file", azurite.ca_file, "--identity-client-id", identity.client_id]
    env = {"PATH": "/usr/bin:/bin", **identity.env()}
    both = subprocess.run([*verify, "--public-key", first_key, "--public-key", second_key], env=env,
                          capture_output=True, text=True, timeout=60)
    assert both.returncode == 0, both.stderr
    assert "OK" in both.stdout
    only_first = verify_audit_store(store, [load_public_key(first_key)])
    assert not only_first.ok and "signature" in only_first.reason  # the second writer's checkpoints need its key
