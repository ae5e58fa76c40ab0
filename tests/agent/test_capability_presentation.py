"""A delegated capability crosses an attested channel only when it chains to the capability key that channel attests.

Threat: a capability minted by server A, handed to a client of server B, would give B
a token it can replay to A. Every client on a channel comes from
``AttestedChannel.http_client`` (FastMCP's factory and ``AttestedSession`` too), which
refuses such a capability before it makes a client; ``verify_status(bearer=...)`` checks
the same against the key the ``attestation_status`` answer binds. The server here is
TEE-mode with bearer auth on (the dev issuer), so a capability it receives is really
verified, and a refused one would show in its log.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from app.agent import AttestedSession
from app.agent.channel import AttestedChannel, attest_channel
from app.agent.delegation import CapabilityNotAttested
from app.agent.errors import ChannelNotAttested, VerificationFailed
from app.agent.pinning import PinnedBearer, pinned_async_client
from app.auth.dev_issuer import DevIssuer
from app.delegation.keys import CapabilityRoot
from app.wire.tls_binding import ATTESTATION_ROUTE
from tests.agent.proxy import wrap_pinned_transports
from tests.delegation.helpers import minted as minted_by
from tests.support.server_process import ServerProcess

SCOPES = ("mcp:read", "mcp:delegate")
RIGHTS = ["attestation_status"]


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Inside a pinned client, in front of its TLS connections: notes every request that goes onto the wire."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, sent: list[tuple[str, str | None]]) -> None:
        self._inner = inner
        self._sent = sent

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self._sent.append((request.url.path, request.headers.get("authorization")))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def wire(monkeypatch) -> list[tuple[str, str | None]]:
    """(path, Authorization) of every request any pinned agent client sends, the attestation route included."""
    sent: list[tuple[str, str | None]] = []
    wrap_pinned_transports(monkeypatch, lambda inner: RecordingTransport(inner, sent))
    return sent


@pytest.fixture(scope="module")
def delegating_server(tee_stack, tmp_path_factory):
    """A TEE-mode server on the agent tests' emulator, with bearer auth on: it mints and checks capabilities."""
    state = tmp_path_factory.mktemp("capability-presentation")
    env = {key: value for key, value in tee_stack.server._env.items() if key not in ("PATH", "HOME")}
    env.update(MCP_AUTH_ISSUER="dev", MCP_DEV_ISSUER_DIR=str(state / "issuer"),
               MCP_AUDIT_LOG=str(state / "audit.jsonl"))
    server = ServerProcess(env, log_dir=state, args=["--no-require-secrets"])
    server.set_env(MCP_AUTH_AUDIENCE=server.url)
    server.start()
    server.issuer = DevIssuer(state / "issuer")
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def capability(delegating_server, tee_stack) -> str:
    """A capability the delegating server minted: it chains to the key its attestation binds."""
    user = delegating_server.issuer.mint(scopes=SCOPES, audience=delegating_server.url, subject="alice")
    async with AttestedSession(delegating_server.url, trust=tee_stack.trust, bearer_token=user) as session:
        return (await session.mint_capability(tools=RIGHTS)).token


@pytest.fixture(scope="module")
def foreign() -> str:
    """A capability minted under another root: another server's, which this one could replay there."""
    return minted_by(CapabilityRoot.per_process(), rights=frozenset(RIGHTS))


def fresh_nonce() -> str:
    return secrets.token_urlsafe(32)


def without_capability_key(channel: AttestedChannel) -> AttestedChannel:
    """As if the attestation bound no capability key (a server that does not delegate)."""
    return dataclasses.replace(channel, runtime={k: v for k, v in channel.runtime.items() if k != "capability_pub"})


async def asked_status(entry: str, channel: AttestedChannel, bearer: str) -> tuple[Any, str, list]:
    """``attestation_status(nonce)`` and ``tools/list`` on ``channel`` presenting ``bearer``: (answer, nonce, tools)."""
    nonce = fresh_nonce()
    if entry == "httpx_client_factory":
        transport = StreamableHttpTransport(channel.url, httpx_client_factory=channel.httpx_client_factory(bearer=bearer))
        async with Client(transport) as client:
            status = (await client.call_tool("attestation_status", {"nonce": nonce})).structured_content
            return status, nonce, await client.list_tools()
    async with channel.http_client(bearer=bearer) as http, \
            streamable_http_client(channel.url, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.discover()
        status = (await session.call_tool("attestation_status", {"nonce": nonce})).structured_content
        return status, nonce, (await session.list_tools()).tools


async def present(entry: str, url: str, trust, bearer: str, channel: AttestedChannel | None = None) -> None:
    """Present ``bearer`` through one of the agent's entry points and call ``attestation_status``."""
    channel = channel or await attest_channel(url, trust)
    if entry != "AttestedSession":
        await asked_status(entry, channel, bearer)
        return
    async with AttestedSession(url, trust=trust, bearer_token=bearer, channel=channel) as session:
        await session.call_tool("attestation_status", {})


CLIENT_ENTRIES = ["http_client", "httpx_client_factory"]
ENTRIES = [*CLIENT_ENTRIES, "AttestedSession"]


class TestCapabilityOfAnotherRootIsNeverSent:
    @pytest.mark.parametrize("entry", ENTRIES)
    async def test_refused_before_any_request_carries_it(self, delegating_server, tee_stack, foreign, wire, entry):
        before = len(delegating_server.output())
        with pytest.raises(CapabilityNotAttested, match="does not chain to the attested capability key"):
            await present(entry, delegating_server.url, tee_stack.trust, foreign)
        assert wire == [(ATTESTATION_ROUTE, None)]  # the nonce went out, and nothing else
        assert "refused" not in delegating_server.output()[before:]  # the server saw no capability to refuse

    @pytest.mark.parametrize("entry", ENTRIES)
    async def test_refused_when_the_attestation_binds_no_capability_key(self, delegating_server, tee_stack,
                                                                       capability, wire, entry):
        channel = without_capability_key(await attest_channel(delegating_server.url, tee_stack.trust))
        with pytest.raises(CapabilityNotAttested, match="binds no capability key"):
            await present(entry, delegating_server.url, tee_stack.trust, capability, channel)
        assert wire == [(ATTESTATION_ROUTE, None)]

    async def test_the_refusal_names_no_token(self, delegating_server, tee_stack, foreign):
        channel = await attest_channel(delegating_server.url, tee_stack.trust)
        with pytest.raises(CapabilityNotAttested) as refused:
            channel.http_client(bearer=foreign)
        body = foreign.removeprefix("biscuit~")
        assert body[:24] not in str(refused.value) and body[-24:] not in str(refused.value)


class TestNoCredentialInAHeader:
    async def test_an_authorization_header_is_refused_so_no_credential_skips_the_gate(self, delegating_server,
                                                                                       tee_stack, foreign, wire):
        channel = await attest_channel(delegating_server.url, tee_stack.trust)
        with pytest.raises(ValueError, match="bearer="):
            channel.http_client(headers={"authorization": f"Bearer {foreign}"})
        with pytest.raises(ValueError, match="bearer="):
            channel.http_client(headers=[("Authorization", f"Bearer {foreign}")])
        with pytest.raises(ValueError, match="not as auth="):
            channel.http_client(auth=httpx2.BasicAuth("agent", foreign))
        transport = StreamableHttpTransport(channel.url, headers={"Authorization": f"Bearer {foreign}"},
                                            httpx_client_factory=channel.httpx_client_factory())
        with pytest.raises(RuntimeError, match="not as an Authorization header"):  # FastMCP wraps the ValueError
            async with Client(transport):
                pass
        assert wire == [(ATTESTATION_ROUTE, None)]

    async def test_a_credential_given_to_one_request_is_refused_before_it_is_sent(self, delegating_server,
                                                                                  tee_stack, capability, foreign,
                                                                                  wire):
        channel = await attest_channel(delegating_server.url, tee_stack.trust)
        async with channel.http_client(bearer=capability) as http:
            with pytest.raises(ValueError, match="not as an Authorization header"):
                await http.post(channel.url, headers={"Authorization": f"Bearer {foreign}"}, json={})
            with pytest.raises(ValueError, match="not as auth="):
                await http.post(channel.url, auth=httpx2.BasicAuth("agent", foreign), json={})
            with pytest.raises(ValueError, match="not as an Authorization header"):
                await http.send(http.build_request("GET", channel.url, headers=[("authorization", foreign)]))
            assert wire == [(ATTESTATION_ROUTE, None)]
            # The client's own bearer still goes out, and a request may opt out of any credential.
            await http.get(channel.url)
            await http.get(channel.url, auth=None)
        assert wire[1:] == [("/mcp", f"Bearer {capability}"), ("/mcp", None)]

    async def test_user_info_in_the_url_and_a_replaced_client_auth_are_refused(self, delegating_server, tee_stack,
                                                                              capability, foreign, wire):
        with_user_info = delegating_server.url.replace("https://", f"https://agent:{foreign}@")
        with pytest.raises(ChannelNotAttested, match="user:password@"):
            await attest_channel(with_user_info, tee_stack.trust)
        assert wire == []
        channel = await attest_channel(delegating_server.url, tee_stack.trust)
        async with channel.http_client() as http:
            with pytest.raises(ValueError, match="not as user:password@ in the URL"):
                await http.get(with_user_info)  # httpx would send it as Basic auth
            with pytest.raises(ValueError, match="not as user:password@ in the URL"):
                await http.get(with_user_info, auth=None)
        async with channel.http_client(bearer=capability) as http:
            http.auth = httpx2.BasicAuth("agent", foreign)
            with pytest.raises(ValueError, match="not as a client auth set after construction"):
                await http.get(channel.url)
        assert wire == [(ATTESTATION_ROUTE, None)]

    async def test_options_that_would_replace_the_pinned_transport_are_refused(self, delegating_server, tee_stack,
                                                                             capability, wire):
        # httpx ignores the pinned TLS context when it is given a transport: the bearer would reach any key.
        channel = await attest_channel(delegating_server.url, tee_stack.trust)
        for options in ({"transport": httpx2.AsyncHTTPTransport()}, {"mounts": {"https://": httpx2.AsyncHTTPTransport()}},
                        {"verify": False}):
            with pytest.raises(ValueError, match="does not take"):
                channel.http_client(bearer=capability, **options)
        with pytest.raises(ValueError, match="response hooks only"):
            channel.http_client(bearer=capability, event_hooks={"request": [lambda request: None]})
        assert wire == [(ATTESTATION_ROUTE, None)]

    async def test_a_bearer_swapped_in_from_another_channel_is_refused(self, delegating_server, tee_stack,
                                                                       capability, foreign, wire):
        channel = await attest_channel(delegating_server.url, tee_stack.trust)
        other = await attest_channel(delegating_server.url, tee_stack.trust)
        async with channel.http_client(bearer=capability) as http:
            # Its own pin is confirmed, but it skipped the check that a capability chains to this channel's key.
            http.auth = PinnedBearer(other.pin, foreign)
            with pytest.raises(ValueError, match="not as a client auth set after construction"):
                await http.get(channel.url)
        with pytest.raises(ValueError, match="another channel's pin"):
            pinned_async_client(channel.pin, bearer=PinnedBearer(other.pin, capability))
        assert wire == [(ATTESTATION_ROUTE, None), (ATTESTATION_ROUTE, None)]

    async def test_a_same_origin_redirect_keeps_the_bearer_behind_the_pin_check(self, delegating_server, tee_stack,
                                                                                capability, wire):
        # The server answers "/mcp/" with a 307 to "/mcp"; the SDK follows it with the first request's headers.
        channel = await attest_channel(delegating_server.url + "/", tee_stack.trust)
        async with channel.http_client(bearer=capability) as http, \
                streamable_http_client(channel.url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.discover()
            assert (await session.call_tool("attestation_status", {})).is_error is False
        assert ("/mcp/", f"Bearer {capability}") in wire and ("/mcp", f"Bearer {capability}") in wire


class TestVerifyStatusChecksThePresentedCapability:
    async def test_a_capability_of_another_root_is_refused(self, delegating_server, tee_stack, capability, foreign):
        channel = await attest_channel(delegating_server.url, tee_stack.trust)
        status, nonce, tools = await asked_status("httpx_client_factory", channel, capability)
        with pytest.raises(VerificationFailed) as refused:
            await channel.verify_status(status, nonce, tools=tools, bearer=foreign)
        assert refused.value.report.first_failure.name == "capability_root"
        assert "does not chain" in refused.value.report.first_failure.detail


class TestCapabilityOfTheAttestedRootWorks:
    @pytest.mark.parametrize("entry", CLIENT_ENTRIES)
    async def test_a_client_on_the_channel(self, delegating_server, tee_stack, capability, wire, entry):
        before = len(delegating_server.output())
        channel = await attest_channel(delegating_server.url, tee_stack.trust)
        status, nonce, tools = await asked_status(entry, channel, capability)
        binding = await channel.verify_status(status, nonce, tools=tools, bearer=capability)
        assert binding.session_pub and binding.channel and [tool.name for tool in tools] == RIGHTS
        assert {authorization for path, authorization in wire if path != ATTESTATION_ROUTE} == {f"Bearer {capability}"}
        assert "refused" not in delegating_server.output()[before:]

    async def test_attested_session(self, delegating_server, tee_stack, capability):
        async with AttestedSession(delegating_server.url, trust=tee_stack.trust, bearer_token=capability) as session:
            result = await session.call_tool("attestation_status", {})
        capability_root = [check for check in session.report.checks if check.name == "capability_root"]
        assert not result.is_error and session.report.verified
        assert "the presented capability chains to it" in capability_root[0].detail
