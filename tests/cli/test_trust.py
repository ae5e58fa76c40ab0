"""The verify-token, seal and emulator subcommands, driven through argparse as `mcp-tee` does."""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from app.cli import trust as attestation_cli
from app.wire.runtime_data import canonical_json, runtime_claims
from app.cli import emulator as emulator_cli
from app.emulator.server import RunningEmulator
from app.secrets.jwe import unseal
from tests.support.emulator_fixtures import CANARIES, CLIENT_ID, cce_policy_b64

REPO = Path(__file__).resolve().parents[2]
NONCE = "cli-nonce-12345"


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mcp-tee")
    subparsers = parser.add_subparsers(required=True)
    attestation_cli.register(subparsers)
    emulator_cli.register(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


class TestVerifyToken:
    def test_all_checks_pass(self, shared_emulator: RunningEmulator, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
        token = shared_emulator.state.issuer.mint(canonical_json(runtime_claims(NONCE, "cHVi", "ab" * 32)))
        (tmp_path / "token").write_text(token)
        code = _run(["verify-token", "--token", str(tmp_path / "token"), "--issuer", shared_emulator.issuer,
                     "--expect-hostdata", shared_emulator.hostdata, "--nonce", NONCE])
        out = capsys.readouterr().out
        assert code == 0
        assert "✓ signature" in out and "✓ hostdata" in out and "✓ nonce" in out and "✗" not in out

    def test_a_failed_check_is_marked_and_exits_nonzero(self, shared_emulator: RunningEmulator,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
        _stdin(monkeypatch, shared_emulator.state.issuer.mint(b'{"nonce":"x"}').encode())
        code = _run(["verify-token", "--token", "-", "--issuer", shared_emulator.issuer,
                     "--expect-hostdata", "cd" * 32])
        out = capsys.readouterr().out
        assert code == 1 and "✗ hostdata" in out and "✓ not debuggable" in out and "✓ not expired" in out

    def test_untrusted_issuer_exits_nonzero(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        (tmp_path / "token").write_text("a.b.c")
        assert _run(["verify-token", "--token", str(tmp_path / "token"), "--issuer", "http://attest.example.com",
                     "--expect-hostdata", "ab" * 32]) == 1
        assert "✗ issuer_url" in capsys.readouterr().out


class TestSeal:
    def test_offline_seal_reads_stdin_and_prints_a_jwe(self, shared_emulator: RunningEmulator, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        pem = tmp_path / "key.pub.pem"
        pem.write_bytes(shared_emulator.public_key.public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))
        _stdin(monkeypatch, CANARIES["github-token"].encode() + b"\n")
        assert _run(["seal", "--public-key", str(pem)]) == 0
        sealed = capsys.readouterr().out.strip()
        assert CANARIES["github-token"] not in sealed
        assert unseal(sealed, shared_emulator.state.keystore.key) == CANARIES["github-token"].encode()

    def test_online_seal_writes_to_the_vault_via_the_sdk(self, emulator: RunningEmulator,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        _stdin(monkeypatch, CANARIES["webhook-url"].encode())
        code = _run(["seal", "--vault", emulator.vault_url, "--key", emulator.key_name, "--name", "webhook-url",
                     "--ca-file", emulator.ca_file, "--identity-client-id", CLIENT_ID])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        stored = emulator.state.get_secret("webhook-url")["value"]
        assert unseal(stored, emulator.state.keystore.key) == CANARIES["webhook-url"].encode()
        assert CANARIES["webhook-url"] not in captured.out + captured.err

    def test_online_seal_needs_key_and_name(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert _run(["seal", "--vault", "https://v.vault.azure.net"]) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_cli_emulator(port: int, policy_file: Path, state_dir: Path) -> subprocess.Popen[str]:
    driver = ("import argparse, sys; from app.cli import emulator as cli; p = argparse.ArgumentParser(); "
              "cli.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
    process = subprocess.Popen([sys.executable, "-c", driver, "emulator", "--port", str(port), "--cce-policy",
                                str(policy_file), "--state-dir", str(state_dir)], cwd=REPO, text=True,
                               stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 20
    while not (state_dir / "emulator.env").exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise AssertionError(f"emulator did not start: {process.communicate()[1]}")
        time.sleep(0.05)
    return process


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=10)[1]


def _release(port: int, env_file: Path) -> httpx.Response:
    env: dict[str, Any] = dict(line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines())
    env = {k: v.strip("'") for k, v in env.items()}
    return httpx.post(f"http://127.0.0.1:{port}/key/release", json={
        "maa_endpoint": env["MAA_ENDPOINT"], "akv_endpoint": env["AKV_ENDPOINT"], "kid": env["SKR_KEY_NAME"]})


class TestEmulatorCommand:
    def test_restart_with_a_tampered_policy_keeps_the_pin_and_refuses_release(self, tmp_path: Path) -> None:
        port, state_dir, policy_file = _free_port(), tmp_path / "state", tmp_path / "cce.b64"
        policy_file.write_text(cce_policy_b64("reviewed image"))
        process = _start_cli_emulator(port, policy_file, state_dir)
        try:
            assert _release(port, state_dir / "emulator.env").status_code == 200
        finally:
            banner = _stop(process)
        assert "NOT A TEE" in banner
        key_before = (state_dir / "unseal-key.pem").read_bytes()
        (state_dir / "emulator.env").unlink()

        policy_file.write_text(cce_policy_b64("tampered image"))
        process = _start_cli_emulator(port, policy_file, state_dir)
        try:
            refused = _release(port, state_dir / "emulator.env")
        finally:
            _stop(process)
        assert refused.status_code == 403 and "x-ms-sevsnpvm-hostdata" in refused.json()["error"]
        assert (state_dir / "unseal-key.pem").read_bytes() == key_before
