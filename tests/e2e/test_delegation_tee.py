"""Delegation end to end in TEE mode: the user's agent verifies and mints, a sub-agent process verifies and calls.

Everything is real: the server runs `mcp-tee serve` in TEE mode against the attestation emulator
(the Azure code path, emulator endpoints), auth uses the dev issuer, both agents speak streamable
HTTP with the official MCP client, and the sub-agent is a second process (`mcp-tee agent`).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from app.agent import AttestedSession, TrustPolicy
from app.auth.dev_issuer import DevIssuer
from app.delegation.keys import SOURCE_TEE, CapabilityRoot
from app.emulator.keystore import key_pem, load_or_create_key
from app.emulator.server import start_emulator
from app.secrets.tee_release import CAPABILITY_ROOT_LABEL, derive_seed
from app.wire.capability_token import Attenuation, public_key_from_b64, verified_chain
from tests.delegation.helpers import minted as minted_by
from tests.support.canaries import assert_no_canary
from tests.support.server_process import ServerProcess
from tests.support.tee import tee_endpoints

CLIENT_ID = "5e5e5e5e-0000-4000-8000-000000000017"
CCE_POLICY = base64.b64encode(b'package policy\napi_version := "0.10.0"\n# mcp-tee delegation e2e\n').decode()
SCOPES = ("mcp:read", "mcp:write", "mcp:delegate")
TRIAGE = Attenuation(tools=frozenset({"query_database", "attestation_status"}), tables=frozenset({"issues"}),
                     max_rows=50, ttl_s=600, max_calls=20, context="sub-agent: triage-bot")


@pytest.fixture(scope="module")
def unseal_key() -> bytes:
    return key_pem(load_or_create_key(None))


@pytest.fixture(scope="module")
def tee_server(baseline_env, unseal_key, tmp_path_factory):
    state = tmp_path_factory.mktemp("delegation-tee")
    with start_emulator(CCE_POLICY, identity_client_id=CLIENT_ID, key_pem_bytes=unseal_key) as emulator:
        emulator.put_sealed_secret("db-connection-string", baseline_env["DB_CONNECTION_STRING"].encode())
        env = {"MCP_CAPABILITY_POLICY": baseline_env["MCP_CAPABILITY_POLICY"], **tee_endpoints(emulator, CLIENT_ID),
               "MCP_AUTH_ISSUER": "dev", "MCP_DEV_ISSUER_DIR": str(state / "issuer"),
               "MCP_AUDIT_LOG": str(state / "audit.jsonl")}
        server = ServerProcess(env, log_dir=state, args=["--no-require-secrets"])
        server.set_env(MCP_AUTH_AUDIENCE=server.url)
        server.start()
        server.issuer = DevIssuer(state / "issuer")
        server.emulator = emulator
        server.state = state
        try:
            yield server
        finally:
            server.stop()


def trust(server) -> TrustPolicy:
    return TrustPolicy.dev(server.emulator.issuer, server.emulator.hostdata)


def user_bearer(server) -> str:
    return server.issuer.mint(scopes=SCOPES, audience=server.url, subject="alice")


def sub_agent(server, token_file: Path, *extra: str) -> subprocess.CompletedProcess:
    """`mcp-tee agent` in its own process, presenting the capability in `token_file`."""
    argv = [sys.executable, "-m", "app.cli", "agent", server.url, "--trust-dev-issuer", server.emulator.issuer,
            "--expect-hostdata", server.emulator.hostdata, "--capability-file", str(token_file), "--json", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")})


async def test_user_mints_and_narrows_and_the_sub_agent_verifies_then_calls(tee_server, unseal_key, tmp_path):
    seed = derive_seed(serialization.load_pem_private_key(unseal_key, None), CAPABILITY_ROOT_LABEL)
    derived = CapabilityRoot.from_seed(seed, SOURCE_TEE)
    async with AttestedSession(tee_server.url, trust=trust(tee_server), bearer_token=user_bearer(tee_server)) as session:
        # The attested capability key is the one derived from the released key, and nothing else.
        assert session.report.capability_public_key == derived.public_key_b64
        root = await session.mint_capability(tools=["query_database", "attestation_status"])
        token = root.attenuate(TRIAGE)
    token_file = tmp_path / "triage.cap"
    token_file.write_text(token)

    within = sub_agent(tee_server, token_file, "--call", "query_database",
                       "--arguments", json.dumps({"sql": "SELECT id FROM issues", "max_rows": 5}))
    report = json.loads(within.stdout)
    assert within.returncode == 0, within.stdout + within.stderr
    assert {check["name"] for check in report["checks"] if check["ok"]} >= {"hostdata", "capability_root"}
    assert report["call_result"]["row_count"] >= 1

    outside = sub_agent(tee_server, token_file, "--call", "query_database",
                        "--arguments", json.dumps({"sql": "SELECT * FROM incidents", "max_rows": 5}))
    assert outside.returncode != 0 and "block 1" in outside.stdout

    wrong_hostdata = subprocess.run(
        [sys.executable, "-m", "app.cli", "agent", tee_server.url, "--trust-dev-issuer", tee_server.emulator.issuer,
         "--expect-hostdata", "ab" * 32, "--capability-file", str(token_file), "--call", "query_database",
         "--arguments", json.dumps({"sql": "SELECT id FROM issues"})], capture_output=True, text=True, timeout=60)
    assert wrong_hostdata.returncode != 0 and "call query_database" not in wrong_hostdata.stdout

    for output in (within, outside, wrong_hostdata):
        assert token.removeprefix("biscuit~")[:32] not in output.stdout + output.stderr
    logs = tee_server.output() + (tee_server.state / "audit.jsonl").read_text()
    assert token.removeprefix("biscuit~")[:32] not in logs
    for secret_form in (seed.hex(), base64.b64encode(seed).decode()):
        assert secret_form[:24] not in logs  # the root private key never leaves memory
    assert_no_canary([logs], "TEE server output or audit")


async def test_sub_agent_refuses_a_token_not_chained_to_the_attested_root(tee_server, tmp_path):
    foreign_file = tmp_path / "foreign.cap"
    foreign_file.write_text(minted_by(CapabilityRoot.per_process(), rights={"query_database"}))
    call = ("--call", "query_database", "--arguments", json.dumps({"sql": "SELECT id FROM issues"}))

    # The channel's pre-auth attestation binds the capability key: a token of another root never leaves the agent.
    before = len(tee_server.output())
    refused = sub_agent(tee_server, foreign_file, *call)
    assert refused.returncode != 0 and "CapabilityNotAttested" in refused.stdout
    assert "call query_database" not in refused.stdout
    assert "capability refused" not in tee_server.output()[before:]  # the server never saw the token


def test_agent_cli_mints_into_a_private_file_and_prints_only_the_revocation_id(tee_server, tmp_path):
    out = tmp_path / "root.cap"
    bearer = tee_server.issuer.mint(scopes=SCOPES, audience=tee_server.url, subject="alice")
    minted = subprocess.run(
        [sys.executable, "-m", "app.cli", "agent", tee_server.url, "--trust-dev-issuer", tee_server.emulator.issuer,
         "--expect-hostdata", tee_server.emulator.hostdata, "--auth-token-env", "USER_TOKEN", "--json",
         "--mint-capability", str(out), "--capability-tools", "query_database", "--capability-ttl", "10m"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "USER_TOKEN": bearer})
    assert minted.returncode == 0, minted.stdout + minted.stderr
    report = json.loads(minted.stdout)
    token = out.read_text().strip()
    assert out.stat().st_mode & 0o777 == 0o600
    assert token.removeprefix("biscuit~")[:32] not in minted.stdout + minted.stderr
    # The file's token chains to the attested key the report names, and the report names its revocation id.
    revocation_ids = verified_chain(token, public_key_from_b64(report["capability_public_key"])).revocation_ids
    assert any(revocation_ids[0] in check["detail"] for check in report["checks"] if check["name"] == "mint_capability")


async def test_a_sub_agent_cannot_call_a_tool_that_is_never_delegated(tee_server):
    """provide_session_credentials seals a user's own token to a session: a capability never reaches it.

    The agent already refuses to call a tool missing from the attested list, so the call goes through
    the pinned channel with the official client, as a client driving MCP itself would.
    """
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from app.agent.channel import attest_channel

    async with AttestedSession(tee_server.url, trust=trust(tee_server), bearer_token=user_bearer(tee_server)) as session:
        token = (await session.mint_capability()).attenuate(Attenuation(ttl_s=600))
    channel = await attest_channel(tee_server.url, trust(tee_server))
    async with channel.http_client(bearer=token) as http, \
            streamable_http_client(channel.url, http_client=http) as (read, write), ClientSession(read, write) as mcp:
        await mcp.discover()
        refused = await mcp.call_tool("provide_session_credentials", {"credentials": {}})
    assert refused.is_error and "cannot be called with a delegated capability" in refused.content[0].text
