"""MCP 2026-07-28 (no sessions) on the attested channel: FastMCP's Client and the official client without a handshake.

Per-session state is rebound to an attested channel: `attestation_status(nonce)` mints
a channel (a fresh session key the token binds, plus a handle), and the client names
the handle in `_meta` of every later request. The README's snippets run here as written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from app.agent.channel import attest_channel
from app.agent.errors import ChannelNotAttested, VerificationFailed
from app.agent.pinning import ChannelPin
from app.wire.credentials import credential_payload
from app.wire.session_seal import seal_to_session
from app.wire.tls_binding import CHANNEL_META_KEY
from tests.agent.conftest import CANARY_USER_TOKEN
from tests.support.canaries import CANARY_GITHUB_TOKEN

BEARER = "bearer-for-the-mcp-server"


def fresh_nonce() -> str:
    return secrets.token_urlsafe(32)


@contextlib.asynccontextmanager
async def fastmcp_client(tee_stack):
    """FastMCP's Client on a freshly attested channel, without a bearer token."""
    channel = await attest_channel(tee_stack.server.url, tee_stack.trust)
    transport = StreamableHttpTransport(channel.url, httpx_client_factory=channel.httpx_client_factory())
    async with Client(transport) as client:
        yield channel, client


@pytest.fixture
def user_token_accepted(github_standin):
    github_standin.tokens.add(CANARY_USER_TOKEN)
    yield
    github_standin.tokens.discard(CANARY_USER_TOKEN)


class TestFastMcpClient:
    async def test_verify_seal_and_use_a_user_token(self, tee_stack, github_standin, user_token_accepted):
        # README: "FastMCP's Client on the attested channel"
        channel = await attest_channel(tee_stack.server.url, tee_stack.trust)
        transport = StreamableHttpTransport(channel.url, httpx_client_factory=channel.httpx_client_factory(bearer=BEARER))
        async with Client(transport) as client:
            nonce = fresh_nonce()
            status = (await client.call_tool("attestation_status", {"nonce": nonce})).structured_content
            binding = await channel.verify_status(status, nonce, tools=await client.list_tools(), bearer=BEARER)
            sealed = seal_to_session(binding.session_pub, credential_payload("github_token", CANARY_USER_TOKEN))
            await client.call_tool("provide_session_credentials", {"sealed": sealed}, meta=binding.meta)
            await client.call_tool("github_search_issues", {"query": "login"}, meta=binding.meta)
            assert github_standin.requests[-1]["token"] == CANARY_USER_TOKEN
            await client.call_tool("github_search_issues", {"query": "login"})  # no channel named: no user state
            assert github_standin.requests[-1]["token"] == CANARY_GITHUB_TOKEN
        assert binding.channel and binding.meta == {CHANNEL_META_KEY: binding.channel}

    async def test_credentials_without_a_channel_are_refused(self, tee_stack):
        async with fastmcp_client(tee_stack) as (channel, client):
            nonce = fresh_nonce()
            status = (await client.call_tool("attestation_status", {"nonce": nonce})).structured_content
            binding = await channel.verify_status(status, nonce)
            sealed = seal_to_session(binding.session_pub, credential_payload("github_token", CANARY_USER_TOKEN))
            with pytest.raises(ToolError, match="no attested channel"):
                await client.call_tool("provide_session_credentials", {"sealed": sealed})
            unknown = {CHANNEL_META_KEY: secrets.token_urlsafe(32)}
            with pytest.raises(ToolError, match="no attestation yet"):
                await client.call_tool("provide_session_credentials", {"sealed": sealed}, meta=unknown)

    async def test_a_nonce_is_single_use_across_channels(self, tee_stack):
        async with fastmcp_client(tee_stack) as (_, client):
            nonce = fresh_nonce()
            first = (await client.call_tool("attestation_status", {"nonce": nonce})).structured_content
            with pytest.raises(ToolError, match="already used"):
                await client.call_tool("attestation_status", {"nonce": nonce})
        assert first["running_in_tee"] is True and first["channel"]


class TestVerifyStatusRefuses:
    async def test_an_answer_binding_another_tls_key(self, tee_stack):
        async with fastmcp_client(tee_stack) as (channel, client):
            nonce = fresh_nonce()
            status = (await client.call_tool("attestation_status", {"nonce": nonce})).structured_content
        elsewhere = dataclasses.replace(channel, pin=ChannelPin("0" * 64))  # as if pinned to another server
        with pytest.raises(ChannelNotAttested, match="another TLS key"):
            await elsewhere.verify_status(status, nonce)

    async def test_an_answer_without_tee_evidence(self, tee_stack):
        async with fastmcp_client(tee_stack) as (channel, client):
            status = (await client.call_tool("attestation_status", {})).structured_content
        with pytest.raises(VerificationFailed) as refused:
            await channel.verify_status(status, fresh_nonce())
        assert refused.value.report.first_failure.name == "tee_mode"


class TestOfficialClientWithoutHandshake:
    async def test_discover_then_verify_seal_and_use(self, tee_stack, github_standin, user_token_accepted):
        # README: "the official client on the attested channel" (2026-07-28: discover, no initialize)
        channel = await attest_channel(tee_stack.server.url, tee_stack.trust)
        async with channel.http_client(bearer=BEARER) as http, \
                streamable_http_client(channel.url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.discover()
            nonce = fresh_nonce()
            status = (await session.call_tool("attestation_status", {"nonce": nonce})).structured_content
            binding = await channel.verify_status(status, nonce, tools=(await session.list_tools()).tools,
                                                  bearer=BEARER)
            sealed = seal_to_session(binding.session_pub, credential_payload("github_token", CANARY_USER_TOKEN))
            accepted = await session.call_tool("provide_session_credentials", {"sealed": sealed}, meta=binding.meta)
            found = await session.call_tool("github_search_issues", {"query": "login"}, meta=binding.meta)
        assert session.protocol_version == "2026-07-28" and binding.channel
        assert not accepted.is_error and not found.is_error
        assert github_standin.requests[-1]["token"] == CANARY_USER_TOKEN
