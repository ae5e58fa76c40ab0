"""The SKR sidecar client against the emulator's sidecar API over real HTTP."""

from __future__ import annotations

import base64
import json
import socket

import httpx
import pytest

from app.attestation.maa_keys import maa_jwks_cache
from app.wire.runtime_data import canonical_json, runtime_claims
from app.attestation.sidecar import SidecarClient, SidecarError, rsa_private_key_from_jwk
from app.attestation.verifier import verify_maa_token
from app.emulator.server import RunningEmulator, start_emulator
from policy.release_policy import build_release_policy, hostdata_of
from tests.support.emulator_fixtures import cce_policy_b64


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestSidecarWireFormat:
    async def test_status(self, shared_emulator: RunningEmulator) -> None:
        assert await SidecarClient(shared_emulator.sidecar_url).status() == "Status OK"

    async def test_attest_binds_runtime_data_into_a_verifiable_token(self, shared_emulator: RunningEmulator) -> None:
        runtime = runtime_claims("nonce-abcdefgh", "cHVi", "ab" * 32)
        token = await SidecarClient(shared_emulator.sidecar_url).attest_maa(shared_emulator.maa_endpoint,
                                                                            canonical_json(runtime))
        claims = verify_maa_token(token, issuer=shared_emulator.issuer, expected_hostdata=shared_emulator.hostdata,
                                  nonce="nonce-abcdefgh", expected_runtime=runtime, jwks_cache=maa_jwks_cache())
        assert claims["x-ms-sevsnpvm-vmpl"] == 0

    async def test_release_returns_the_double_encoded_private_key(self, shared_emulator: RunningEmulator) -> None:
        jwk = await SidecarClient(shared_emulator.sidecar_url).release_key(
            shared_emulator.maa_endpoint, shared_emulator.akv_endpoint, shared_emulator.key_name)
        key = rsa_private_key_from_jwk(jwk)
        assert key.public_key().public_numbers() == shared_emulator.public_key.public_numbers()

    async def test_raw_release_body_is_a_json_string(self, shared_emulator: RunningEmulator) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(shared_emulator.sidecar_url + "/key/release", json={
                "maa_endpoint": shared_emulator.maa_endpoint, "akv_endpoint": shared_emulator.akv_endpoint,
                "kid": shared_emulator.key_name})
        assert isinstance(response.json()["key"], str)
        assert {"n", "e", "d", "p", "q", "dp", "dq", "qi"} <= json.loads(response.json()["key"]).keys()

    @pytest.mark.parametrize("body", [{}, {"maa_endpoint": "x"}, {"runtime_data": "e30="}])
    async def test_bad_input_is_400_with_an_error_body(self, shared_emulator: RunningEmulator, body: dict) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(shared_emulator.sidecar_url + "/attest/maa", json=body)
        assert response.status_code == 400 and "error" in response.json()

    async def test_runtime_data_must_be_base64(self, shared_emulator: RunningEmulator) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(shared_emulator.sidecar_url + "/attest/maa",
                                         json={"maa_endpoint": shared_emulator.maa_endpoint, "runtime_data": "%%%"})
        assert response.status_code == 400


class TestReleaseRefusals:
    @pytest.mark.parametrize(("running_image", "released"), [("the reviewed image", True),
                                                             ("a tampered image", False)])
    async def test_release_only_for_the_pinned_hostdata(self, running_image: str, released: bool) -> None:
        port = _free_port()
        issuer = f"http://127.0.0.1:{port}"
        pinned = build_release_policy(issuer.removeprefix("http://"), hostdata_of(cce_policy_b64("the reviewed image")),
                                      authority=issuer)
        with start_emulator(cce_policy_b64(running_image), release_policy=pinned, port=port) as emulator:
            client = SidecarClient(emulator.sidecar_url)
            if released:
                assert await client.release_key(emulator.maa_endpoint, emulator.akv_endpoint, emulator.key_name)
            else:
                with pytest.raises(SidecarError) as refused:
                    await client.release_key(emulator.maa_endpoint, emulator.akv_endpoint, emulator.key_name)
                assert refused.value.status == 403
                assert "x-ms-sevsnpvm-hostdata" in str(refused.value)
            assert emulator.state.keystore.release_count == int(released)

    async def test_token_from_another_authority_gets_403(self, shared_emulator: RunningEmulator) -> None:
        with start_emulator(cce_policy_b64(), release_policy=build_release_policy(
                "sharedeus.eus.attest.azure.net", shared_emulator.hostdata)) as emulator:
            with pytest.raises(SidecarError, match="authority") as refused:
                await SidecarClient(emulator.sidecar_url).release_key(emulator.maa_endpoint, emulator.akv_endpoint,
                                                                      emulator.key_name)
            assert refused.value.status == 403 and not refused.value.retryable

    async def test_unknown_key_gets_403(self, shared_emulator: RunningEmulator) -> None:
        with pytest.raises(SidecarError, match="not found"):
            await SidecarClient(shared_emulator.sidecar_url).release_key(
                shared_emulator.maa_endpoint, shared_emulator.akv_endpoint, "another-key")

    async def test_unreachable_sidecar_is_a_retryable_error(self) -> None:
        with pytest.raises(SidecarError) as error:
            await SidecarClient(f"http://127.0.0.1:{_free_port()}", timeout=1).status()
        assert error.value.status is None and error.value.retryable


class TestReleasedKeyParsing:
    def test_non_rsa_jwk_is_refused_without_echoing_it(self) -> None:
        with pytest.raises(ValueError) as error:
            rsa_private_key_from_jwk({"kty": "EC", "d": "c2VjcmV0LWQ"})
        assert "c2VjcmV0LWQ" not in str(error.value)

    def test_inconsistent_rsa_jwk_is_refused(self) -> None:
        bogus = {f: base64.urlsafe_b64encode(b"\x03").decode() for f in ("n", "e", "d", "p", "q", "dp", "dq", "qi")}
        with pytest.raises(ValueError, match="not a consistent RSA private key"):
            rsa_private_key_from_jwk({"kty": "RSA", **bogus})
