"""Minting attested channels in a loop cannot evict another principal's channel, key or sealed credential.

On MCP 2026-07-28 each `attestation_status(nonce)` that names no channel mints one, and every
channel is an entry of the session registry; only the tool's quota limits how fast. The registry
was one LRU shared by every principal, so a principal that minted `MAX_SESSIONS` channels pushed
everyone else's out: their session keys and sealed layer-2 credentials were forgotten. Checked
against the registry before the fix, sized to this test's 6 entries: the test failed, alice's
channel was gone after the flood and her next search ran with the server's own token instead of
hers. Now each principal holds its share and loses only its own oldest channels, and past the
total the largest holder gives one up.

The server is the real one, in-process: TEE mode against the emulator, bearer auth with several
principals, the agent's attested channel and sealing. Only the registry is shrunk so that the
flood takes a dozen attestations rather than a thousand.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import threading
from collections.abc import Iterator

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError

from app.agent.channel import AttestedChannel, attest_channel
from app.agent.trust import TrustPolicy
from app.attestation.channel import TlsChannel
from app.config import load_settings
from app.secrets.tee_release import start_tee
from app.server import assembly
from app.sessions import SessionRegistry
from app.wire.credentials import credential_payload
from app.wire.session_seal import seal_to_session
from app.wire.tls_binding import CHANNEL_META_KEY
from tests.support.authed import ISSUER, bearer_token, jwks_app
from tests.support.canaries import CANARY_GITHUB_TOKEN
from tests.support.emulator_fixtures import CLIENT_ID
from tests.support.stack import free_port, serve
from tests.support.tee import tee_endpoints

REGISTRY_SIZE = 6
SHARE = 3
MINTS_PER_ATTACKER = 5
CANARY_ALICE_TOKEN = "ghp_CANARYaliceSCOPEDtoken000000000000000042"


def fresh_nonce() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def tee_server(emulator, github_standin, roomy_policy, tmp_path, monkeypatch) -> Iterator[tuple[str, TrustPolicy]]:
    """`assemble` in TEE mode behind bearer auth, served over its attested TLS channel; yields URL and trust."""
    monkeypatch.setattr(assembly, "SessionRegistry", functools.partial(
        SessionRegistry, max_sessions=REGISTRY_SIZE, max_sessions_per_principal=SHARE))
    emulator.put_sealed_secret("github-token", CANARY_GITHUB_TOKEN.encode())
    github_standin.tokens.add(CANARY_ALICE_TOKEN)
    port = free_port()
    url = f"https://127.0.0.1:{port}/mcp"
    with serve(jwks_app()) as jwks:
        env = {**tee_endpoints(emulator, CLIENT_ID), "MCP_CAPABILITY_POLICY": str(roomy_policy),
               "MCP_AUDIT_LOG": str(tmp_path / "audit.jsonl"), "GITHUB_API_URL": github_standin.url,
               "MCP_AUTH_ISSUER": ISSUER, "MCP_AUTH_JWKS_URL": f"{jwks}/jwks", "MCP_AUTH_AUDIENCE": url}
        settings = load_settings(env, port=port, require_secrets=False)
        # Released on a loop of its own: the test's loop is not running yet, and must not be replaced.
        tee = _run_in_thread(start_tee(env, require_secrets=False))
        channel = TlsChannel.generate()
        server = assembly.assemble(settings, tee.secrets, audit_key=tee.audit_key, tee=tee, channel=channel)
        with serve(server.http_app(), port, ssl_context_factory=channel.uvicorn_ssl_context_factory):
            yield url, TrustPolicy.dev(emulator.issuer, emulator.hostdata)
    github_standin.tokens.discard(CANARY_ALICE_TOKEN)


def _run_in_thread(coroutine):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coroutine)))
    thread.start()
    thread.join()
    return result[0]


def client_for(channel: AttestedChannel, url: str, subject: str) -> Client:
    bearer = bearer_token(url, subject, "mcp:read")
    return Client(StreamableHttpTransport(channel.url, httpx_client_factory=channel.httpx_client_factory(bearer=bearer)))


async def mint_channels(client: Client, count: int) -> list[str]:
    """What the attacker does: attest with fresh nonces and never name a channel, so each call mints one."""
    minted = []
    for _ in range(count):
        status = (await client.call_tool("attestation_status", {"nonce": fresh_nonce()})).structured_content
        minted.append(status["channel"])
    return minted


class TestChannelFloodingCannotEvictOthers:
    async def test_alices_sealed_credential_survives_two_principals_minting_channels(self, tee_server, github_standin):
        url, trust = tee_server
        channel = await attest_channel(url, trust)
        async with client_for(channel, url, "alice") as alice, client_for(channel, url, "eve") as eve, \
                client_for(channel, url, "mallory") as mallory:
            nonce = fresh_nonce()
            status = (await alice.call_tool("attestation_status", {"nonce": nonce})).structured_content
            binding = await channel.verify_status(status, nonce)
            sealed = seal_to_session(binding.session_pub, credential_payload("github_token", CANARY_ALICE_TOKEN))
            await alice.call_tool("provide_session_credentials", {"sealed": sealed}, meta=binding.meta)

            eves = await mint_channels(eve, MINTS_PER_ATTACKER)
            mallorys = await mint_channels(mallory, MINTS_PER_ATTACKER)
            # 1 + 2 x 5 channels were minted into 6 places: the attackers paid for every eviction.

            await alice.call_tool("github_search_issues", {"query": "login"}, meta=binding.meta)
            assert github_standin.requests[-1]["token"] == CANARY_ALICE_TOKEN, "alice's sealed token still serves her"
            after = (await alice.call_tool("attestation_status", {}, meta=binding.meta)).structured_content
            assert [entry["kind"] for entry in after["session_credentials"]] == ["github_token"]
            for attacker, handles in ((eve, eves), (mallory, mallorys)):
                with pytest.raises(ToolError, match="no attestation yet"):  # each lost its own oldest channel
                    await attacker.call_tool("provide_session_credentials", {"sealed": sealed},
                                             meta={CHANNEL_META_KEY: handles[0]})
        assert len(set(eves + mallorys)) == 2 * MINTS_PER_ATTACKER
