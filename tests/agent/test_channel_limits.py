"""What an unverified server can make the agent do before verification: buffer little, and carry no other auth."""

from __future__ import annotations

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from app.agent import TrustPolicy
from app.agent.channel import MAX_EVIDENCE_BYTES, AttestedChannel, attest_channel
from app.agent.errors import VerificationFailed
from app.agent.pinning import ChannelPin
from app.agent.report import VerificationReport
from app.attestation.channel import TlsChannel
from app.devstack.threaded import ThreadedServer
from app.wire.tls_binding import ATTESTATION_ROUTE

TRUST = TrustPolicy.maa("sharedeus.eus.attest.azure.net", "ab" * 32)
SENT_BYTES: list[int] = []


async def endless_evidence(request):
    async def chunks():
        for _ in range(4096):  # 256 MiB if the agent kept reading
            # uvicorn drops writes after a disconnect without yielding, so count only what could still cross.
            if await request.is_disconnected():
                return
            SENT_BYTES.append(65536)
            yield b"x" * 65536

    return StreamingResponse(chunks(), media_type="application/json")


@pytest.fixture(scope="module")
def huge_route():
    app = Starlette(routes=[Route(ATTESTATION_ROUTE, endless_evidence)])
    with ThreadedServer(app, tls=TlsChannel.generate()) as server:
        yield server


class TestEvidenceIsBounded:
    async def test_an_oversized_answer_is_refused_after_the_cap(self, huge_route):
        SENT_BYTES.clear()
        with pytest.raises(VerificationFailed) as refused:
            await attest_channel(f"{huge_route.url}/mcp", TRUST)
        assert refused.value.report.first_failure.name == "attestation_route"
        # The agent stopped reading: far less than the 256 MiB offered crossed the connection.
        assert sum(SENT_BYTES) < 64 * 1024 * 1024 and MAX_EVIDENCE_BYTES < 1024 * 1024


class TestFactoryAuth:
    def test_a_transport_supplied_auth_is_never_used(self):
        """FastMCP hands its own `auth=` to the factory; it would bypass the pin gate, so it is dropped."""
        channel = AttestedChannel("https://mcp.example.test/mcp", TRUST, ChannelPin(), {}, {},
                                  VerificationReport(url="https://mcp.example.test/mcp"))
        client = channel.httpx_client_factory()(auth=httpx2.BasicAuth("someone", "CANARY-password"))
        assert client.auth is None or not isinstance(client.auth, httpx2.BasicAuth)
