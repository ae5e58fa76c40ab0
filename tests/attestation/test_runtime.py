"""TEE-mode start-up against the emulator: release, unseal, derive; and every way it fails closed."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from app.attestation.maa_keys import maa_jwks_cache
from app.attestation.runtime import TeeConfig, TeeRuntime, TeeStartupError
from app.secrets.tee_release import (AUDIT_KEY_LABEL, CAPABILITY_ROOT_LABEL, ReleasedSecrets, derive_audit_signing_key,
                                     derive_seed, refuse_plaintext_env, release_secrets)
from app.wire.runtime_data import runtime_claims
from app.wire.session_seal import SessionKey
from app.attestation.verifier import verify_maa_token
from app.emulator.server import RunningEmulator, start_emulator
from policy.release_policy import build_release_policy
from tests.support.emulator_fixtures import CANARIES, CLIENT_ID, cce_policy_b64

NAMES = list(CANARIES)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(emulator: RunningEmulator, **overrides: Any) -> TeeConfig:
    env = {"SKR_ENDPOINT": emulator.sidecar_url, "MAA_ENDPOINT": emulator.maa_endpoint,
           "AKV_ENDPOINT": emulator.akv_endpoint, "SKR_KEY_NAME": emulator.key_name, "IDENTITY_CLIENT_ID": CLIENT_ID,
           "AKV_CA_FILE": emulator.ca_file, "SKR_RELEASE_DEADLINE_S": "2"}
    return TeeConfig.from_env({**env, **overrides})


def _seal_canaries(emulator: RunningEmulator) -> None:
    for name, value in CANARIES.items():
        emulator.put_sealed_secret(name, value.encode())


class _FakeTime:
    """A clock that only moves when the runtime sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class TestRelease:
    async def test_happy_path_unseals_every_secret_in_memory(self, emulator: RunningEmulator) -> None:
        _seal_canaries(emulator)
        runtime = TeeRuntime(_config(emulator))
        released = await release_secrets(runtime, NAMES)
        assert {name: released.get(name) for name in NAMES} == CANARIES
        assert released.failed == {}
        assert runtime.status()["failed_steps"] == []

    async def test_audit_key_is_derived_from_the_released_key(self, emulator: RunningEmulator) -> None:
        _seal_canaries(emulator)
        runtime = TeeRuntime(_config(emulator))
        released = await release_secrets(runtime, NAMES)
        expected = derive_audit_signing_key(emulator.state.keystore.key).public_key()
        raw = expected.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        derived = released.audit_signing_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                       serialization.PublicFormat.Raw)
        assert derived == raw
        signature = released.audit_signing_key.sign(b"audit line")
        expected.verify(signature, b"audit line")
        # The capability root has its own label: derived from the same key, yet a different key.
        assert released.capability_root_seed == derive_seed(emulator.state.keystore.key, CAPABILITY_ROOT_LABEL)
        assert released.capability_root_seed != derive_seed(emulator.state.keystore.key, AUDIT_KEY_LABEL)
        assert "capability_root_seed" not in repr(released)

    async def test_sidecar_that_starts_late_is_waited_for(self) -> None:
        port, vault_port = _free_port(), _free_port()
        config = TeeConfig(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", f"127.0.0.1:{vault_port}",
                           "mcp-tee-unseal", CLIENT_ID, release_deadline_s=10)
        runtime = TeeRuntime(config)
        pending = asyncio.ensure_future(runtime.release_key())
        await asyncio.sleep(0.5)
        assert not pending.done()
        with start_emulator(cce_policy_b64(), port=port, vault_port=vault_port):
            key = await asyncio.wait_for(pending, timeout=10)
        assert key.key_size == 2048


class TestFailClosed:
    async def test_sidecar_down_past_the_deadline(self) -> None:
        port = _free_port()
        fake = _FakeTime()
        config = TeeConfig(f"http://127.0.0.1:{port}", "maa.example", "vault.example", "k", CLIENT_ID,
                           release_deadline_s=3)
        runtime = TeeRuntime(config, sleep=fake.sleep, clock=fake.clock)
        with pytest.raises(TeeStartupError) as error:
            await release_secrets(runtime, NAMES)
        assert error.value.step == "key_release"
        assert sum(fake.sleeps) == pytest.approx(3)
        assert fake.sleeps[:3] == [0.2, 0.4, 0.8]  # Exponential backoff, capped by the deadline.
        assert runtime.status()["failed_steps"] == ["key_release"]

    async def test_release_policy_mismatch_is_not_retried(self) -> None:
        pinned = build_release_policy("maa.example", "cd" * 32, authority="http://127.0.0.1:1")
        with start_emulator(cce_policy_b64(), release_policy=pinned, identity_client_id=CLIENT_ID) as emulator:
            fake = _FakeTime()
            runtime = TeeRuntime(_config(emulator), sleep=fake.sleep, clock=fake.clock)
            with pytest.raises(TeeStartupError, match="403") as error:
                await release_secrets(runtime, NAMES)
        assert error.value.step == "key_release" and fake.sleeps == []

    async def test_corrupted_ciphertext_fails_only_that_secret(self, emulator: RunningEmulator) -> None:
        _seal_canaries(emulator)
        sealed = emulator.state.get_secret("webhook-url")["value"]
        emulator.state.put_secret("webhook-url", sealed[:-6] + ("A" * 6 if not sealed.endswith("AAAAAA") else "B" * 6))
        runtime = TeeRuntime(_config(emulator))
        released = await release_secrets(runtime, NAMES)
        assert released.failed == {"webhook-url": "unseal:webhook-url"}
        assert released.get("webhook-url") is None and released.get("github-token") == CANARIES["github-token"]
        assert runtime.status()["failed_steps"] == ["unseal:webhook-url"]

    async def test_missing_secret_is_reported_by_name(self, emulator: RunningEmulator) -> None:
        emulator.put_sealed_secret("github-token", b"only-this-one")
        released = await release_secrets(TeeRuntime(_config(emulator)), NAMES)
        assert released.failed == {"db-connection-string": "secret_read:db-connection-string",
                                   "webhook-url": "secret_read:webhook-url"}

    async def test_vault_refusal_is_a_secret_read_failure(self, emulator: RunningEmulator) -> None:
        runtime = TeeRuntime(_config(emulator, IDENTITY_CLIENT_ID="not-our-identity"))
        with pytest.raises(TeeStartupError) as error:
            await release_secrets(runtime, NAMES)
        assert error.value.step == "secret_read"

    async def test_secret_sealed_to_another_key_fails_unseal(self, emulator: RunningEmulator) -> None:
        with start_emulator(cce_policy_b64()) as other:
            emulator.state.put_secret("github-token", other.put_sealed_secret("github-token", b"x"))
        released = await release_secrets(TeeRuntime(_config(emulator)), ["github-token"])
        assert released.failed == {"github-token": "unseal:github-token"}

    @pytest.mark.parametrize("variable", ["GITHUB_TOKEN", "DB_CONNECTION_STRING", "WEBHOOK_URL"])
    def test_plaintext_env_is_refused_by_name(self, variable: str) -> None:
        with pytest.raises(TeeStartupError, match=variable) as error:
            refuse_plaintext_env({variable: "CANARY-plaintext-in-env"})
        assert error.value.step == "plaintext_env" and "CANARY" not in str(error.value)

    def test_clean_env_passes(self) -> None:
        refuse_plaintext_env({"PATH": "/usr/bin", "GITHUB_TOKEN": ""})

    def test_missing_config_names_the_variables(self) -> None:
        with pytest.raises(TeeStartupError, match="SKR_ENDPOINT, MAA_ENDPOINT") as error:
            TeeConfig.from_env({"AKV_ENDPOINT": "v", "SKR_KEY_NAME": "k", "IDENTITY_CLIENT_ID": "c"})
        assert error.value.step == "config"


class TestAttest:
    async def test_token_binds_nonce_session_key_and_tools(self, shared_emulator: RunningEmulator) -> None:
        emulator = shared_emulator
        session = SessionKey.generate()
        token = await TeeRuntime(_config(emulator)).attest(
            runtime_claims("client-nonce-1", session.public_b64url, "ab" * 32))
        claims = verify_maa_token(token, issuer=emulator.issuer, expected_hostdata=emulator.hostdata,
                                  nonce="client-nonce-1", jwks_cache=maa_jwks_cache(), expected_runtime={
                                      "nonce": "client-nonce-1", "session_pub": session.public_b64url,
                                      "tools_digest": "ab" * 32})
        assert claims["x-ms-runtime"]["session_pub"] == session.public_b64url

    @pytest.mark.parametrize("nonce", ["", "short", "x" * 129, "tab\tinside-nonce", "ünïcode-nonce"])
    async def test_bad_nonces_are_refused(self, shared_emulator: RunningEmulator, nonce: str) -> None:
        with pytest.raises(ValueError, match="nonce"):
            await TeeRuntime(_config(shared_emulator)).attest(runtime_claims(nonce, "cHVi", "ab" * 32))


class TestCanaries:
    async def test_no_plaintext_in_logs_output_errors_or_repr(self, emulator: RunningEmulator,
                                                              caplog: pytest.LogCaptureFixture,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
        caplog.set_level(logging.DEBUG)
        _seal_canaries(emulator)
        emulator.state.put_secret("webhook-url", "garbage.not.a.real.jwe")
        runtime = TeeRuntime(_config(emulator))
        released = await release_secrets(runtime, NAMES)
        messages = [repr(released), str(runtime.status())]
        for broken in (_config(emulator, IDENTITY_CLIENT_ID="stranger"),):
            try:
                await release_secrets(TeeRuntime(broken), NAMES)
            except TeeStartupError as exc:
                messages.append(str(exc))
        captured = capsys.readouterr()
        haystack = "\n".join([caplog.text, captured.out, captured.err, *messages])
        assert released.get("github-token") == CANARIES["github-token"]
        for value in CANARIES.values():
            assert value not in haystack

    def test_released_secrets_repr_shows_names_only(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        released = ReleasedSecrets(audit_signing_key=ed25519.Ed25519PrivateKey.generate())
        released._values["github-token"] = CANARIES["github-token"]
        assert CANARIES["github-token"] not in repr(released) and "github-token" in repr(released)
