"""The attested channel under attack: each threat of issue 11 is made for real, and the agent refuses.

Everything runs against `mcp-tee serve` in TEE mode (the emulator behind it), over
real TLS on loopback, with the real MCP client inside ``AttestedSession``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import httpx2
import pytest

from app.agent import AttestedSession
from app.agent.channel import attest_channel
from app.agent.errors import ChannelNotAttested, VerificationFailed
from app.agent.pinning import ChannelPin, pin_refusal, pinned_async_client
from app.devstack.tls_proxy import TlsTerminatingProxy
from app.wire.tls_binding import ATTESTATION_ROUTE
from tests.agent.conftest import CANARY_USER_TOKEN
from tests.agent.proxy import wrap_pinned_transports
from tests.support.canaries import CANARY_GITHUB_TOKEN, assert_no_canary
from tests.support.tcp_relay import TcpRelay

BEARER = "CANARY-bearer-for-the-mcp-server-0000000000000000000000000042"
CREDENTIALS_TOOL = "provide_session_credentials"


def relay_url(relay: TcpRelay) -> str:
    return f"https://127.0.0.1:{relay.port}/mcp"


class SwapRouteAnswer(httpx2.AsyncBaseTransport):
    """Past TLS on the agent's own connection: the route's request reaches the real peer, the answer is swapped."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, answer: Callable[[httpx2.Request], Any]) -> None:
        self._inner = inner
        self._answer = answer

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)  # the real handshake, the real pin capture
        if request.url.path != ATTESTATION_ROUTE:
            return response
        await response.aread()
        return httpx2.Response(200, json=await self._answer(request), request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def swap_route_answers(monkeypatch, answer: Callable[[httpx2.Request], Any]) -> None:
    wrap_pinned_transports(monkeypatch, lambda inner: SwapRouteAnswer(inner, answer))


async def route_answer(base_url: str, nonce: str) -> dict:
    async with pinned_async_client(ChannelPin()) as http:
        return (await http.get(f"{base_url}{ATTESTATION_ROUTE}", params={"nonce": nonce})).json()


@pytest.fixture(scope="module")
def second_server(tee_stack, tmp_path_factory):
    """Server B: another TEE-mode process on the same emulator, so its own key and its own tokens."""
    from tests.support.server_process import ServerProcess

    log_dir = tmp_path_factory.mktemp("channel-b")
    env = {key: value for key, value in tee_stack.server._env.items() if key not in ("PATH", "HOME")}
    server = ServerProcess(env, log_dir=log_dir, args=["--no-require-secrets"]).start()
    yield server
    server.stop()


class TestTlsTerminatingMitm:
    """Threat 1: a proxy with its own self-signed certificate forwards everything to the real server."""

    async def test_the_agent_refuses_before_any_credential_reaches_the_proxy(self, tee_stack):
        with TlsTerminatingProxy(tee_stack.server.base_url) as proxy:
            with pytest.raises(ChannelNotAttested) as refused:
                async with AttestedSession(proxy.url, trust=tee_stack.trust, bearer_token=BEARER) as session:
                    await session.provide_credentials("github_token", CANARY_USER_TOKEN)
        assert refused.value.report.first_failure.name == "tls_channel"
        assert "not the key the attestation binds" in str(refused.value)
        assert [request.path for request in proxy.seen] == [ATTESTATION_ROUTE]  # the nonce, and nothing else
        assert not proxy.saw_authorization and CREDENTIALS_TOOL not in proxy.tools_called
        assert_no_canary([request.raw.decode(errors="replace") for request in proxy.seen], "the proxy's log")
        assert BEARER.encode() not in b"".join(request.raw for request in proxy.seen)

    def test_the_cli_prints_the_refusal_and_sends_no_token(self, tee_stack, capsys, monkeypatch):
        from app.cli import main

        monkeypatch.setenv("MCP_BEARER", BEARER)
        with TlsTerminatingProxy(tee_stack.server.base_url) as proxy:
            exit_code = main(["agent", proxy.url, "--expect-hostdata", tee_stack.emulator.hostdata,
                              "--trust-dev-issuer", tee_stack.emulator.issuer, "--auth-token-env", "MCP_BEARER"])
        output = capsys.readouterr().out
        assert exit_code == 1 and "✗ tls_channel: ChannelNotAttested" in output and "result: REFUSED" in output
        assert not proxy.saw_authorization and BEARER not in output


class TestTcpRelay:
    """Threat 2: the host relays bytes without terminating TLS; it learns nothing."""

    async def test_verification_holds_and_the_relay_reads_no_plaintext(self, tee_stack, github_standin):
        github_standin.tokens.add(CANARY_USER_TOKEN)
        host, port = "127.0.0.1", tee_stack.server.port
        with TcpRelay((host, port)) as relay:
            async with AttestedSession(relay_url(relay), trust=tee_stack.trust, bearer_token=BEARER) as session:
                await session.provide_credentials("github_token", CANARY_USER_TOKEN)
                found = await session.call_tool("github_search_issues", {"query": "login"})
            captured = relay.captured
        assert session.report.verified and not found.is_error
        plaintexts = [BEARER, CANARY_USER_TOKEN, "Login fails after token rotation", "github_search_issues",
                      "attestation_status", "tools/call"]
        assert len(captured) > 10_000
        assert [text for text in plaintexts if text.encode() in captured] == []


class TestReplayedAttestation:
    """Threat 3: an old answer, genuinely bound to the right key, but for a stale nonce."""

    async def test_a_stale_nonce_is_refused(self, tee_stack, monkeypatch):
        old = await route_answer(tee_stack.server.base_url, "an-old-nonce-from-yesterday-0000")

        async def replay(request: httpx2.Request) -> dict:
            return old

        swap_route_answers(monkeypatch, replay)
        with pytest.raises(VerificationFailed) as refused:
            await attest_channel(tee_stack.server.url, tee_stack.trust)
        assert refused.value.report.first_failure.name == "nonce"


class TestKeyChangedAfterVerification:
    """Threat 4: a restart behind the same address; new connections meet a new key."""

    async def test_new_connections_are_refused_until_verified_again(self, tee_stack, second_server):
        with TcpRelay(("127.0.0.1", tee_stack.server.port)) as relay:
            # The SDK surfaces the refused connection as an exception group when the session closes.
            with pytest.raises(BaseException) as refused:
                async with AttestedSession(relay_url(relay), trust=tee_stack.trust, bearer_token=BEARER) as session:
                    pin = session.channel.pin
                    relay.upstream = ("127.0.0.1", second_server.port)  # "the server restarted"
                    relay.drop_connections()
                    await session.call_tool("attestation_status", {})
            assert pin_refusal(refused.value) is not None
            assert set(pin.refused) == {pin.refused[0]} and pin.refused[0] != pin.spki_sha256
            async with AttestedSession(relay_url(relay), trust=tee_stack.trust) as fresh:
                assert fresh.report.verified and fresh.channel.spki_sha256 == pin.refused[0]


class TestTokenBoundToAnotherServer:
    """Threat 5: on a connection to B, the answer carries A's fresh token (bound to A's key)."""

    async def test_the_agent_refuses(self, tee_stack, second_server, monkeypatch):
        async def from_a(request: httpx2.Request) -> dict:
            return await route_answer(tee_stack.server.base_url, request.url.params["nonce"])

        swap_route_answers(monkeypatch, from_a)
        with pytest.raises(ChannelNotAttested, match="not the key the attestation binds"):
            await attest_channel(second_server.url, tee_stack.trust)


class TestNothingLeaks:
    """Threat 7: the TLS private key and the canary secrets appear nowhere."""

    def test_no_key_material_or_canary_in_logs_environ_or_agent_output(self, tee_stack, capsys):
        from app.cli import main

        exit_code = main(["agent", tee_stack.server.url, "--expect-hostdata", tee_stack.emulator.hostdata,
                          "--trust-dev-issuer", tee_stack.emulator.issuer, "--json"])
        agent_output = capsys.readouterr()
        report = json.loads(agent_output.out)
        assert exit_code == 0 and report["tls_spki_sha256"]
        pid = tee_stack.server.pid
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        open_files = [str(path.readlink()) for path in Path(f"/proc/{pid}/fd").iterdir() if path.exists()]
        texts = [*tee_stack.logs(), environ, agent_output.out, agent_output.err]
        assert_no_canary(texts, "logs, /proc/<pid>/environ and the agent's output")
        assert all("PRIVATE KEY" not in text for text in texts)
        assert [name for name in open_files if "memfd" in name] == [], "the key's RAM file is closed after loading"
        assert CANARY_GITHUB_TOKEN not in json.dumps(report)
