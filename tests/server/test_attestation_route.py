"""The pre-auth attestation route under abuse: bounded answers, bounded MAA calls, nothing secret (threat 6)."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from app.server.attestation_route import (
    MAX_QUERY_BYTES,
    MAX_TRACKED_SOURCES,
    PER_SOURCE_BURST,
    PreAuthAttestationRoute,
    RouteLimits,
)
from app.attestation.sidecar import SidecarError
from app.wire.tls_binding import ATTESTATION_ROUTE
from tests.support.canaries import CANARY_GITHUB_TOKEN, assert_no_canary

NONCE = "n" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingAttest:
    """Stands in for the sidecar round trip; records every nonce that reached it."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.nonces: list[str] = []
        self.fail = fail

    async def __call__(self, nonce: str) -> dict:
        self.nonces.append(nonce)
        if self.fail is not None:
            raise self.fail
        return {"token": "header.claims.signature", "runtime": {"nonce": nonce}}


def client_for(route: PreAuthAttestationRoute, source: str = "203.0.113.7") -> httpx.AsyncClient:
    app = Starlette(routes=[Route(ATTESTATION_ROUTE, route.handle, methods=["GET"])])
    transport = httpx.ASGITransport(app=app, client=(source, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://server")


def nonce(i: int) -> str:
    return f"nonce-{i:026d}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestBadInput:
    @pytest.mark.parametrize("query", [
        "", "nonce=", "nonce=short", "nonce=" + "a" * 129, "nonce=has%20space-aaaaaaaaaaaa",
        "nonce=" + "%00" * 20, f"nonce={NONCE}&nonce={NONCE}", "other=1",
    ])
    async def test_refused_before_the_sidecar_with_a_fixed_message(self, query, clock):
        attest = RecordingAttest()
        async with client_for(PreAuthAttestationRoute(attest, clock=clock)) as client:
            response = await client.get(f"{ATTESTATION_ROUTE}?{query}")
        assert response.status_code == 400
        assert response.json() == {"error": "send exactly one nonce: 16-128 base64url characters"}
        assert attest.nonces == []

    async def test_an_oversized_query_string_is_refused_unread(self, clock):
        attest = RecordingAttest()
        async with client_for(PreAuthAttestationRoute(attest, clock=clock)) as client:
            response = await client.get(f"{ATTESTATION_ROUTE}?nonce={NONCE}&pad={'x' * MAX_QUERY_BYTES}")
        assert response.status_code == 414 and attest.nonces == []

    async def test_a_replayed_nonce_costs_no_second_maa_call(self, clock):
        attest = RecordingAttest()
        async with client_for(PreAuthAttestationRoute(attest, clock=clock)) as client:
            first = await client.get(ATTESTATION_ROUTE, params={"nonce": NONCE})
            clock.now += 60
            again = await client.get(ATTESTATION_ROUTE, params={"nonce": NONCE})
        assert first.status_code == 200 and again.status_code == 409
        assert attest.nonces == [NONCE]


class TestFlood:
    async def test_maa_is_called_at_most_the_configured_rate(self, clock):
        attest = RecordingAttest()
        route = PreAuthAttestationRoute(attest, RouteLimits(global_per_second=2, per_source_per_minute=10_000),
                                        clock=clock)
        statuses = []
        for second in range(3):
            for i in range(50):
                async with client_for(route, source=f"198.51.100.{i}") as client:
                    statuses.append((await client.get(ATTESTATION_ROUTE,
                                                      params={"nonce": nonce(second * 100 + i)})).status_code)
            clock.now += 1.0
        assert len(attest.nonces) == route.maa_calls <= 2 + 2 * 2  # the burst, then the rate per second
        assert set(statuses) == {200, 429}

    async def test_one_source_is_held_to_its_own_bucket(self, clock):
        attest = RecordingAttest()
        route = PreAuthAttestationRoute(attest, RouteLimits(global_per_second=1000, per_source_per_minute=6),
                                        clock=clock)
        async with client_for(route) as client:
            answers = [await client.get(ATTESTATION_ROUTE, params={"nonce": nonce(i)}) for i in range(20)]
        async with client_for(route, source="192.0.2.1") as other:
            assert (await other.get(ATTESTATION_ROUTE, params={"nonce": nonce(99)})).status_code == 200
        refused = [a for a in answers if a.status_code == 429]
        assert len(answers) - len(refused) == PER_SOURCE_BURST
        assert int(refused[0].headers["Retry-After"]) >= 1

    async def test_a_request_the_server_bucket_refuses_costs_its_source_nothing(self, clock):
        route = PreAuthAttestationRoute(RecordingAttest(), RouteLimits(global_per_second=1, per_source_per_minute=6),
                                        clock=clock)
        async with client_for(route, source="192.0.2.9") as other:
            assert (await other.get(ATTESTATION_ROUTE, params={"nonce": nonce(0)})).status_code == 200  # global empty
        async with client_for(route) as client:
            refused = [await client.get(ATTESTATION_ROUTE, params={"nonce": nonce(i)}) for i in range(1, 11)]
            assert {answer.status_code for answer in refused} == {429}
            served = 0
            for i in range(PER_SOURCE_BURST):
                clock.now += 1.0  # the server's bucket refills; this source's own burst is untouched
                served += (await client.get(ATTESTATION_ROUTE, params={"nonce": nonce(100 + i)})).status_code == 200
        assert served == PER_SOURCE_BURST

    async def test_a_spray_of_sources_does_not_grow_memory(self, clock):
        route = PreAuthAttestationRoute(RecordingAttest(), RouteLimits(global_per_second=1e6), clock=clock)
        for i in range(MAX_TRACKED_SOURCES + 50):
            route._sources.bucket(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", route._source_quota)
        assert len(route._sources) == MAX_TRACKED_SOURCES


class TestLeaksNothing:
    async def test_a_sidecar_failure_is_a_fixed_503(self, clock):
        failing = RecordingAttest(fail=SidecarError("attest", f"upstream said {CANARY_GITHUB_TOKEN}", 500))
        async with client_for(PreAuthAttestationRoute(failing, clock=clock)) as client:
            response = await client.get(ATTESTATION_ROUTE, params={"nonce": NONCE})
        assert response.status_code == 503 and response.headers["cache-control"] == "no-store"
        assert_no_canary([response.text], "the pre-auth route's error")

    async def test_the_answer_is_exactly_the_evidence(self, clock):
        async with client_for(PreAuthAttestationRoute(RecordingAttest(), clock=clock)) as client:
            response = await client.get(ATTESTATION_ROUTE, params={"nonce": NONCE})
        assert json.loads(response.text) == {"token": "header.claims.signature", "runtime": {"nonce": NONCE}}


@pytest.mark.parametrize("limits", [dict(global_per_second=0), dict(per_source_per_minute=-1)])
def test_limits_must_be_positive(limits):
    with pytest.raises(ValueError):
        RouteLimits(**limits)
