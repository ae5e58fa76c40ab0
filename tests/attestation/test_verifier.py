"""The MAA token verifier: every check holds for a good token and refuses its own forgery by name."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.attestation import errors
from app.attestation.maa_keys import maa_jwks_cache
from app.jwks import KeyUnavailable
from app.wire.runtime_data import canonical_json, expected_reportdata, runtime_claims
from app.attestation.verifier import check_maa_token, verify_maa_token, verify_maa_token_async
from app.emulator.issuer import MaaIssuer
from app.emulator.server import RunningEmulator

NONCE = "nonce-0123456789"
RUNTIME = runtime_claims(NONCE, "c2Vzc2lvbi1wdWI", "ab" * 32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def issuer(shared_emulator: RunningEmulator) -> MaaIssuer:
    return shared_emulator.state.issuer


def _verify(emulator: RunningEmulator, token: str, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"issuer": emulator.issuer, "expected_hostdata": emulator.hostdata, "nonce": NONCE,
                               "jwks_cache": maa_jwks_cache(), **overrides}
    return verify_maa_token(token, **options)


def _mint(issuer: MaaIssuer, runtime: dict[str, Any] = RUNTIME, **kwargs: Any) -> str:
    return issuer.mint(canonical_json(runtime), **kwargs)


class TestAcceptsGenuineTokens:
    def test_good_token_returns_its_claims(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        claims = _verify(shared_emulator, _mint(issuer), expected_runtime=RUNTIME)
        assert claims["x-ms-runtime"] == RUNTIME

    def test_hostdata_comparison_ignores_case(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        _verify(shared_emulator, _mint(issuer), expected_hostdata=shared_emulator.hostdata.upper())

    def test_expiry_within_leeway_is_accepted(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        _verify(shared_emulator, _mint(issuer, claims={"exp": int(time.time()) - 30}), leeway=60)

    async def test_async_twin_runs_the_same_checks(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        options = {"issuer": shared_emulator.issuer, "expected_hostdata": shared_emulator.hostdata,
                   "jwks_cache": maa_jwks_cache()}
        assert (await verify_maa_token_async(_mint(issuer), nonce=NONCE, **options))["x-ms-runtime"] == RUNTIME
        with pytest.raises(errors.NonceMismatch):
            await verify_maa_token_async(_mint(issuer), nonce="another-nonce-1", **options)

    def test_report_lists_every_check(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        results = check_maa_token(_mint(issuer), issuer=shared_emulator.issuer, nonce=NONCE,
                                  expected_hostdata=shared_emulator.hostdata, jwks_cache=maa_jwks_cache())
        assert all(r.ok for r in results)
        assert [r.check for r in results if r.skipped] == ["runtime"]
        assert {"algorithm", "jku", "signature", "issuer", "hostdata", "nonce", "reportdata"} <= {r.check for r in results}


def _forged_hs256(issuer: MaaIssuer, public_pem: bytes) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    payload = _b64(json.dumps(issuer.claims_for(canonical_json(RUNTIME))).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _alg_none(issuer: MaaIssuer) -> str:
    header = _b64(json.dumps({"alg": "none", "kid": issuer.kid}).encode())
    return f"{header}.{_b64(json.dumps(issuer.claims_for(canonical_json(RUNTIME))).encode())}."


class TestRefusesForgeries:
    def test_wrong_signing_key(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(errors.SignatureInvalid):
            _verify(shared_emulator, _mint(issuer, signing_key=other))

    def test_alg_none(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.AlgorithmNotAllowed):
            _verify(shared_emulator, _alg_none(issuer))

    def test_hs256_keyed_with_the_public_key(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        cert = maa_jwks_cache().key(issuer.certs_url, issuer.kid)
        pem = cert.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(errors.AlgorithmNotAllowed):
            _verify(shared_emulator, _forged_hs256(issuer, pem))

    def test_foreign_jku_is_refused_and_never_fetched(self, shared_emulator: RunningEmulator, issuer: MaaIssuer,
                                                      recording_server: Any) -> None:
        attacker = recording_server(issuer.jwks())
        with pytest.raises(errors.ForeignJku):
            _verify(shared_emulator, _mint(issuer, headers={"jku": attacker.url + "/certs"}))
        assert attacker.requests == []

    def test_wrong_issuer(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.IssuerMismatch):
            _verify(shared_emulator, _mint(issuer, claims={"iss": "https://evil.attest.example"}))

    def test_expired(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.TokenExpired):
            _verify(shared_emulator, _mint(issuer, claims={"exp": int(time.time()) - 3600}))

    def test_not_yet_valid(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.TokenNotYetValid):
            _verify(shared_emulator, _mint(issuer, claims={"nbf": int(time.time()) + 3600}))

    def test_debuggable_guest(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.DebuggableGuest):
            _verify(shared_emulator, _mint(issuer, claims={"x-ms-sevsnpvm-is-debuggable": True}))

    def test_debuggable_as_string_is_not_false(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.DebuggableGuest):
            _verify(shared_emulator, _mint(issuer, claims={"x-ms-sevsnpvm-is-debuggable": "false"}))

    def test_wrong_compliance_status(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.ComplianceMismatch):
            _verify(shared_emulator, _mint(issuer, claims={"x-ms-compliance-status": "azure-compliant-cvm"}))

    def test_wrong_attestation_type(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.AttestationTypeMismatch):
            _verify(shared_emulator, _mint(issuer, claims={"x-ms-attestation-type": "sgx"}))

    def test_wrong_hostdata(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.HostdataMismatch):
            _verify(shared_emulator, _mint(issuer), expected_hostdata="cd" * 32)

    def test_missing_nonce(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.NonceMissing):
            _verify(shared_emulator, _mint(issuer, runtime={"session_pub": "x"}))

    def test_wrong_nonce(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.NonceMismatch):
            _verify(shared_emulator, _mint(issuer), nonce="someone-elses-nonce")

    @pytest.mark.parametrize("vmpl", [1, 3, "0", False, None])
    def test_vmpl_other_than_integer_zero(self, shared_emulator: RunningEmulator, issuer: MaaIssuer, vmpl) -> None:
        with pytest.raises(errors.VmplMismatch):
            _verify(shared_emulator, _mint(issuer, claims={"x-ms-sevsnpvm-vmpl": vmpl}))

    def test_reportdata_whose_upper_half_is_not_zero(self, shared_emulator: RunningEmulator,
                                                     issuer: MaaIssuer) -> None:
        padded_wrong = expected_reportdata(RUNTIME)[:64] + "ff" * 32
        with pytest.raises(errors.ReportdataMismatch):
            _verify(shared_emulator, _mint(issuer, claims={"x-ms-sevsnpvm-reportdata": padded_wrong}))

    def test_reportdata_not_matching_runtime(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.ReportdataMismatch):
            _verify(shared_emulator, _mint(issuer, claims={"x-ms-sevsnpvm-reportdata": "00" * 64}))

    def test_runtime_not_the_expected_one(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.RuntimeMismatch):
            _verify(shared_emulator, _mint(issuer), expected_runtime={**RUNTIME, "tools_digest": "cd" * 32})

    def test_report_marks_the_failed_check(self, shared_emulator: RunningEmulator, issuer: MaaIssuer) -> None:
        results = check_maa_token(_mint(issuer, claims={"x-ms-sevsnpvm-is-debuggable": True}),
                                  issuer=shared_emulator.issuer, expected_hostdata=shared_emulator.hostdata,
                                  jwks_cache=maa_jwks_cache())
        assert [r.check for r in results if not r.ok] == ["debuggable"]


class TestIssuerTrust:
    @pytest.mark.parametrize("url", ["http://attest.example.com", "http://10.0.0.1:8080", "ftp://127.0.0.1",
                                     "https://user:pw@attest.example.com"])
    def test_untrusted_issuer_urls_are_refused(self, url: str, issuer: MaaIssuer) -> None:
        with pytest.raises(errors.UntrustedIssuerUrl):
            verify_maa_token(_mint(issuer), issuer=url, expected_hostdata="ab" * 32)

    @pytest.mark.parametrize("url", ["https://sharedeus.eus.attest.azure.net", "http://127.0.0.1:1", "http://[::1]:1",
                                     "http://localhost:1"])
    def test_https_and_loopback_issuers_are_allowed(self, url: str) -> None:
        # The URL passes the trust gate; the (bogus) token is then refused on its own merits.
        with pytest.raises(errors.MalformedToken):
            verify_maa_token("not.a-token", issuer=url, expected_hostdata="ab" * 32)

    def test_jwks_fetch_sends_no_credentials(self, issuer: MaaIssuer, recording_server: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NETRC", "/nonexistent")
        server = recording_server(issuer.jwks())
        maa_jwks_cache().key(server.url + "/certs", issuer.kid)
        (_, headers), = server.requests
        assert not {"authorization", "cookie", "proxy-authorization"} & {h.lower() for h in headers}


class TestJwksCache:
    def test_unknown_kid_refreshes_at_most_once_per_interval(self, issuer: MaaIssuer, recording_server: Any) -> None:
        server = recording_server(issuer.jwks())
        now = [0.0]
        cache = maa_jwks_cache(refresh_interval_s=30, clock=lambda: now[0])
        url = server.url + "/certs"
        cache.key(url, issuer.kid)
        cache.key(url, issuer.kid)
        assert len(server.requests) == 1
        with pytest.raises(KeyUnavailable):
            cache.key(url, "rotated-kid")
        assert len(server.requests) == 1  # Within the interval: no second fetch.
        now[0] = 31.0
        with pytest.raises(KeyUnavailable):
            cache.key(url, "rotated-kid")
        assert len(server.requests) == 2

    def test_rotated_key_is_picked_up(self, shared_emulator: RunningEmulator, issuer: MaaIssuer,
                                      recording_server: Any) -> None:
        server = recording_server({"keys": []})
        cache = maa_jwks_cache(refresh_interval_s=0)
        with pytest.raises(KeyUnavailable):
            cache.key(server.url + "/certs", issuer.kid)
        server.body = issuer.jwks()
        assert cache.key(server.url + "/certs", issuer.kid) is not None
