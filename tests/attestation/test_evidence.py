"""TEE-mode evidence: the server vouches only for a token that verifies for this very request, else it refuses.

A stand-in SKR sidecar on 127.0.0.1 has the emulator's MAA sign each token (so signature, issuer
and keys are real) and can break one thing in it first: the claims (another nonce, another session
key, a debuggable guest), the signature, or the token's very shape.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.attestation.evidence import TeeAttestation
from app.attestation.runtime import TeeConfig, TeeRuntime
from app.attestation.sidecar import SidecarError
from app.emulator.issuer import MaaIssuer
from app.emulator.server import RunningEmulator
from app.errors import InvalidArgument
from app.sessions import SessionRegistry, session_key
from app.wire.runtime_data import canonical_json
from tests.support.canaries import CANARY_GITHUB_TOKEN, assert_no_canary
from tests.support.emulator_fixtures import CLIENT_ID
from tests.support.stack import serve

NONCE = "evidence-nonce-0123456789"
TOOLS_DIGEST = "ab" * 32
TLS_SPKI = "cd" * 32
AUDIT_PUB = base64.b64encode(bytes(32)).decode()
SESSION = session_key("alice", "mcp-session-1")
# A key MAA never published: a token it signs looks genuine and is not.
FOREIGN_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

Fault = Callable[[MaaIssuer, dict[str, str]], str]


def _claims_for(**changed: str) -> Fault:
    """MAA signs runtime data the server did not ask for (a replayed or redirected attestation)."""
    return lambda issuer, runtime: issuer.mint(canonical_json({**runtime, **changed}))


FAULTS: dict[str, tuple[Fault, str]] = {
    "another nonce": (_claims_for(nonce="replayed-nonce-0123456789"), "nonce"),
    "another session key": (_claims_for(session_pub="c29tZW9uZS1lbHNl"), "runtime"),
    "another TLS key": (_claims_for(tls_spki_sha256="ee" * 32), "runtime"),
    "a debuggable guest": (lambda issuer, runtime: issuer.mint(canonical_json(runtime),
                                                               claims={"x-ms-sevsnpvm-is-debuggable": True}),
                           "debuggable"),
    "a key MAA never published": (lambda issuer, runtime: issuer.mint(canonical_json(runtime),
                                                                      signing_key=FOREIGN_KEY), "signature"),
    "not a token at all": (lambda issuer, runtime: "not-a-jwt", "malformed"),
}


class StandInSidecar:
    """`POST /attest/maa` as the SKR sidecar answers it, with the emulator's MAA signing and an optional fault."""

    def __init__(self, issuer: MaaIssuer) -> None:
        self.issuer = issuer
        self.fault: Fault | None = None
        self.refusal: str | None = None  # answer 403 with this error text instead of a token
        self.issued: list[str] = []

    def app(self) -> Starlette:
        async def attest(request: Request) -> JSONResponse:
            raw = base64.b64decode((await request.json())["runtime_data"])
            if self.refusal is not None:
                return JSONResponse({"error": self.refusal}, status_code=403)
            token = self.fault(self.issuer, json.loads(raw)) if self.fault else self.issuer.mint(raw)
            self.issued.append(token)
            return JSONResponse({"token": token})

        return Starlette(routes=[Route("/attest/maa", attest, methods=["POST"])])


@pytest.fixture(scope="module")
def stand_in(shared_emulator: RunningEmulator) -> Iterator[tuple[StandInSidecar, str]]:
    sidecar = StandInSidecar(shared_emulator.state.issuer)
    with serve(sidecar.app()) as url:
        yield sidecar, url


@pytest.fixture
def sidecar(stand_in) -> Iterator[StandInSidecar]:
    sidecar, _ = stand_in
    yield sidecar
    sidecar.fault, sidecar.refusal = None, None
    sidecar.issued.clear()


@pytest.fixture
def sessions() -> SessionRegistry:
    registry = SessionRegistry()
    # The session already holds a user credential: a refusal must not carry it anywhere.
    registry.add_credential(SESSION, "github_token", CANARY_GITHUB_TOKEN, ttl_s=600)
    return registry


@pytest.fixture
def runtime(shared_emulator: RunningEmulator, stand_in) -> TeeRuntime:
    return TeeRuntime(TeeConfig(stand_in[1], shared_emulator.maa_endpoint, shared_emulator.akv_endpoint,
                                shared_emulator.key_name, CLIENT_ID))


@pytest.fixture
def attestation(shared_emulator: RunningEmulator, runtime, sessions) -> TeeAttestation:
    return TeeAttestation(runtime, sessions, shared_emulator.issuer, AUDIT_PUB, TLS_SPKI)


async def _evidence(attestation: TeeAttestation, session_id: str | None = SESSION) -> dict[str, Any]:
    return await attestation.evidence(nonce=NONCE, session_id=session_id, tools_digest=TOOLS_DIGEST)


class TestVouchedFor:
    async def test_an_honest_sidecar_gets_a_verified_claim(self, attestation, sidecar, sessions) -> None:
        """The control: the stand-in is faithful, so each refusal below is the fault's doing."""
        body = await _evidence(attestation)
        assert body["running_in_tee"] is True and body["attestation"]["token"] == sidecar.issued[0]
        assert sessions.get(SESSION).attested is True


class TestFailClosed:
    @pytest.mark.parametrize("fault, check", FAULTS.values(), ids=FAULTS.keys())
    async def test_a_token_that_does_not_verify_is_not_vouched_for(self, attestation, sidecar, sessions, caplog,
                                                                   fault, check) -> None:
        caplog.set_level(logging.DEBUG)
        sidecar.fault = fault
        body = await _evidence(attestation)
        assert body["running_in_tee"] is False and body["attestation"] is None
        assert body["attestation_error"] == "the attestation token failed verification"
        assert sessions.get(SESSION).attested is False
        assert f"failed verification: {check}" in caplog.text
        answer = json.dumps(body)
        assert sidecar.issued[0] not in answer and sidecar.issued[0] not in caplog.text
        assert_no_canary([answer, caplog.text], "a refused attestation")

    @pytest.mark.parametrize("fault", [fault for fault, _ in FAULTS.values()], ids=FAULTS.keys())
    async def test_the_pre_auth_route_refuses_the_same_tokens(self, attestation, sidecar, fault) -> None:
        sidecar.fault = fault
        with pytest.raises(SidecarError, match="failed verification") as refused:
            await attestation.public_evidence(nonce=NONCE, tools_digest=TOOLS_DIGEST)
        assert refused.value.step == "attest" and sidecar.issued[0] not in str(refused.value)

    async def test_a_sidecar_refusal_is_reported_by_step(self, attestation, sidecar, sessions, caplog) -> None:
        sidecar.refusal = "attestation failed: SNP report unavailable"
        body = await _evidence(attestation)
        assert body["running_in_tee"] is False and body["attestation"] is None
        assert body["attestation_error"] == "attest failed: sidecar answered 403: attestation failed: SNP report unavailable"
        assert body["tee_steps"]["failed_steps"] == ["attest"] and sessions.get(SESSION).attested is False
        assert_no_canary([json.dumps(body), caplog.text], "a refused attestation")

    async def test_no_session_and_no_channel_is_refused_before_the_sidecar_is_asked(self, attestation, sidecar,
                                                                                     runtime) -> None:
        """`attestation_status` always passes an MCP session or a channel it mints in TEE mode, so no MCP
        request reaches this branch; the refusal is tested where it lives, at `TeeAttestation.evidence`.
        The tool would hand the caller this `InvalidArgument` as a plain tool error."""
        with pytest.raises(InvalidArgument, match="no MCP session and no attested channel") as refused:
            await _evidence(attestation, session_id=None)
        assert sidecar.issued == [] and runtime.status()["steps"] == []
        assert_no_canary([str(refused.value)], "the refusal")
