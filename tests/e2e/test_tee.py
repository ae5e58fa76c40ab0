"""TEE mode end to end: `mcp-tee serve --tee` against the attestation emulator, every link real.

The server's code path is the Azure one; only the endpoints point at the emulator.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from cryptography.hazmat.primitives import serialization

from app.agent.pinning import ChannelPin, pinned_async_client
from app.secrets.tee_release import derive_audit_signing_key
from app.wire.runtime_data import tools_digest
from app.attestation.verifier import verify_maa_token
from app.devstack.postgres import free_port
from app.secrets.tee_release import StartupRefused, start_tee
from app.emulator.keystore import key_pem, load_or_create_key
from app.emulator.server import start_emulator
from app.wire.tls_binding import ATTESTATION_ROUTE, BINDING_VERSION, CHANNEL_EXTENSION
from policy.release_policy import build_release_policy, hostdata_of
from tests.support.canaries import CANARY_GITHUB_TOKEN, assert_no_canary
from tests.support.mcp_client import mcp_session, text_of
from tests.support.server_process import ServerProcess
from tests.support.tee import tee_endpoints

CLIENT_ID = "0f0e0d0c-0b0a-0908-0706-050403020100"
CCE_POLICY = base64.b64encode(b'package policy\napi_version := "0.10.0"\n# mcp-tee e2e\n').decode()
TAMPERED_POLICY = base64.b64encode(b'package policy\napi_version := "0.10.0"\n# tampered image\n').decode()


def fresh_nonce() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def unseal_key() -> bytes:
    return key_pem(load_or_create_key(None))


def seal_baseline(emulator, baseline_env: dict[str, str]) -> None:
    emulator.put_sealed_secret("github-token", baseline_env["GITHUB_TOKEN"].encode())
    emulator.put_sealed_secret("db-connection-string", baseline_env["DB_CONNECTION_STRING"].encode())
    emulator.put_sealed_secret("webhook-url", baseline_env["WEBHOOK_URL"].encode())


def tee_env(emulator, baseline_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The baseline env minus its plaintext secrets, pointed at the emulator."""
    plaintext = {"GITHUB_TOKEN", "DB_CONNECTION_STRING", "WEBHOOK_URL"}
    env = {key: value for key, value in baseline_env.items() if key not in plaintext}
    return {**env, **tee_endpoints(emulator, CLIENT_ID), **extra}


@pytest.fixture(scope="module")
def emulator(baseline_env, unseal_key):
    with start_emulator(CCE_POLICY, identity_client_id=CLIENT_ID, key_pem_bytes=unseal_key) as running:
        seal_baseline(running, baseline_env)
        yield running


@pytest.fixture(scope="module")
def tee_server(emulator, baseline_env, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("tee")
    server = ServerProcess(tee_env(emulator, baseline_env, MCP_AUDIT_LOG=str(log_dir / "audit.jsonl")),
                           log_dir=log_dir).start()
    yield server
    server.stop()


class TestAttestedStatus:
    async def test_fresh_token_binds_nonce_session_key_and_tools(self, tee_server, emulator):
        nonce, pin = fresh_nonce(), ChannelPin()
        async with mcp_session(tee_server.url, pin=pin) as session:
            listed = (await session.list_tools()).tools
            result = await session.call_tool("attestation_status", {"nonce": nonce})
        body = result.structured_content
        assert body["running_in_tee"] is True and body["tee_type"] == "sevsnp"
        assert body["secrets_source"] == "sealed-keyvault" and all(body["secrets_loaded"].values())
        evidence = body["attestation"]
        assert evidence["runtime"]["nonce"] == nonce
        assert evidence["runtime"]["tools_digest"] == tools_digest(listed)
        claims = verify_maa_token(evidence["token"], issuer=emulator.issuer, expected_hostdata=emulator.hostdata,
                                  nonce=nonce, expected_runtime=evidence["runtime"])
        assert claims["x-ms-sevsnpvm-hostdata"] == emulator.hostdata == body["hostdata"]
        assert claims["x-ms-runtime"]["audit_pub"] == body["audit_public_key"], "the audit key is attested"
        assert claims["x-ms-runtime"]["tls_spki_sha256"] == pin.spki_sha256, "the TLS key of this connection is attested"

    async def test_a_nonce_is_single_use_per_session(self, tee_server):
        nonce = fresh_nonce()
        async with mcp_session(tee_server.url, pin=ChannelPin()) as session:
            first = await session.call_tool("attestation_status", {"nonce": nonce})
            again = await session.call_tool("attestation_status", {"nonce": nonce})
        assert first.structured_content["running_in_tee"] is True
        assert again.is_error and "already used" in text_of(again)

    async def test_without_a_nonce_there_is_no_claim_of_tee(self, tee_server):
        async with mcp_session(tee_server.url, pin=ChannelPin()) as session:
            body = (await session.call_tool("attestation_status", {})).structured_content
        assert body["running_in_tee"] is False and "nonce" in body["attestation_error"]

    async def test_audit_key_is_derived_from_the_released_key(self, tee_server, unseal_key):
        async with mcp_session(tee_server.url, pin=ChannelPin()) as session:
            body = (await session.call_tool("attestation_status", {})).structured_content
        derived = derive_audit_signing_key(serialization.load_pem_private_key(unseal_key, None)).public_key()
        raw = derived.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert base64.b64decode(body["audit_public_key"]) == raw


class TestUnsealedSecretsServeTools:
    async def test_tools_use_the_unsealed_credentials(self, tee_server, github_standin):
        async with mcp_session(tee_server.url, pin=ChannelPin()) as session:
            search = await session.call_tool("github_search_issues", {"query": "login"})
            query = await session.call_tool("query_database", {"sql": "SELECT count(*) FROM issues"})
        assert not search.is_error and not query.is_error, text_of(search) + text_of(query)
        assert github_standin.requests[-1]["token"] == CANARY_GITHUB_TOKEN

    def test_no_plaintext_secret_in_the_process_environment(self, tee_server):
        environ = Path(f"/proc/{tee_server.pid}/environ").read_bytes().decode(errors="replace")
        assert_no_canary([environ], "/proc/<pid>/environ of the TEE server")

    def test_no_plaintext_secret_in_logs(self, tee_server):
        assert_no_canary([tee_server.output()], "the TEE server's logs")


class TestAttestedChannel:
    """The server side of the channel: HTTPS only, the pre-auth route, the MCP advertisement."""

    async def test_the_pre_auth_route_binds_the_tls_key_of_this_connection(self, tee_server, emulator):
        nonce, pin = fresh_nonce(), ChannelPin()
        async with pinned_async_client(pin) as http:
            response = await http.get(f"{tee_server.base_url}{ATTESTATION_ROUTE}", params={"nonce": nonce})
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
        body = response.json()
        assert set(body["runtime"]) == {"nonce", "tools_digest", "audit_pub", "tls_spki_sha256", "capability_pub"}  # no session key
        claims = verify_maa_token(body["token"], issuer=emulator.issuer, expected_hostdata=emulator.hostdata,
                                  nonce=nonce, expected_runtime=body["runtime"])
        assert claims["x-ms-runtime"]["tls_spki_sha256"] == pin.spki_sha256
        assert_no_canary([response.text], "the pre-auth attestation answer")

    def test_plain_http_is_off_in_tee_mode(self, tee_server):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{tee_server.port}/healthz", timeout=5)

    async def test_both_eras_advertise_the_extension(self, tee_server, emulator):
        async with pinned_async_client(ChannelPin(), timeout=30) as http:
            async with streamable_http_client(tee_server.url, http_client=http) as (read, write):
                async with ClientSession(read, write) as legacy:
                    initialized = await legacy.initialize()
            async with streamable_http_client(tee_server.url, http_client=http) as (read, write):
                async with ClientSession(read, write) as modern:
                    discovered = await modern.discover()
        # 2025-11-25 has no `extensions` field on the wire, so the same settings travel under `experimental`.
        for advertised in (initialized.capabilities.experimental[CHANNEL_EXTENSION],
                           discovered.capabilities.extensions[CHANNEL_EXTENSION]):
            assert advertised["route"] == ATTESTATION_ROUTE and advertised["binding"] == BINDING_VERSION
            assert advertised["issuer"] == emulator.issuer


class TestFailClosedStartup:
    def start(self, env, tmp_path, *args: str) -> ServerProcess:
        server = ServerProcess(env, log_dir=tmp_path, args=list(args)).start(wait=False)
        return server

    def test_plaintext_secret_env_is_refused(self, emulator, baseline_env, tmp_path):
        server = self.start(tee_env(emulator, baseline_env, GITHUB_TOKEN=CANARY_GITHUB_TOKEN), tmp_path)
        assert server.wait_exit() == 3
        assert "plaintext" in server.output() and "GITHUB_TOKEN" in server.output()
        assert_no_canary([server.output()], "the refusal")

    async def test_sidecar_down_past_the_deadline_is_refused(self, emulator, baseline_env, caplog):
        env = tee_env(emulator, baseline_env, SKR_ENDPOINT="http://127.0.0.1:9", SKR_RELEASE_DEADLINE_S="1")
        with pytest.raises(StartupRefused, match="key_release"):
            await start_tee(env)

    async def test_changed_measurement_gets_no_key(self, baseline_env, unseal_key, caplog):
        """The 'tampered image': the group's hostdata no longer matches the release policy."""
        port = free_port()
        pinned = build_release_policy(f"127.0.0.1:{port}", hostdata_of(CCE_POLICY), authority=f"http://127.0.0.1:{port}")
        with start_emulator(TAMPERED_POLICY, identity_client_id=CLIENT_ID, key_pem_bytes=unseal_key,
                            release_policy=pinned, port=port) as tampered:
            seal_baseline(tampered, baseline_env)
            with pytest.raises(StartupRefused, match="key_release.*x-ms-sevsnpvm-hostdata") as refused:
                await start_tee(tee_env(tampered, baseline_env))
        assert_no_canary([str(refused.value), caplog.text], "the refusal")

    async def test_corrupted_ciphertext_is_refused(self, baseline_env, unseal_key, monkeypatch):
        with start_emulator(CCE_POLICY, identity_client_id=CLIENT_ID, key_pem_bytes=unseal_key) as running:
            for name, value in running.identity_env.items():  # azure-identity reads the process env
                monkeypatch.setenv(name, value)
            seal_baseline(running, baseline_env)
            running.state.put_secret("github-token", "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.AAAA.BBBB.CCCC.DDDD")
            with pytest.raises(StartupRefused, match="unseal:github-token"):
                await start_tee(tee_env(running, baseline_env))

    async def test_opt_in_degraded_start_disables_only_the_affected_tool(self, baseline_env, unseal_key, tmp_path):
        with start_emulator(CCE_POLICY, identity_client_id=CLIENT_ID, key_pem_bytes=unseal_key) as running:
            seal_baseline(running, baseline_env)
            running.state.put_secret("github-token", "not a JWE at all")
            server = self.start(tee_env(running, baseline_env), tmp_path, "--no-require-secrets")
            server.wait_ready()
            try:
                async with mcp_session(server.url, pin=ChannelPin()) as session:
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    body = (await session.call_tool("attestation_status", {"nonce": fresh_nonce()})).structured_content
            finally:
                server.stop()
        assert "github_search_issues" not in tools and "query_database" in tools
        assert body["disabled_capabilities"]["github_search_issues"] == "unseal:github-token failed"
        assert "unseal:github-token" in body["tee_steps"]["failed_steps"]
        assert body["running_in_tee"] is True
