"""Fixtures for the attestation tests: a CCE policy and emulators on 127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from app.emulator.keystore import key_pem, load_or_create_key
from app.emulator.server import RunningEmulator, start_emulator

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CANARIES = {
    "github-token": "ghp_CANARYgithub0123456789abcdefghijklmnop",
    "db-connection-string": "postgresql://app:CANARYdbpassw0rd@127.0.0.1:5432/app",
    "webhook-url": "https://hooks.example.invalid/CANARYwebhook/secret-path",
}


def cce_policy_b64(text: str = "package policy\napi_version := \"0.10.0\"\n") -> str:
    """A stand-in CCE policy, base64 as `az confcom --print-policy` prints it."""
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[RunningEmulator]:
    """One emulator for tests that only read from it."""
    with start_emulator(cce_policy_b64(), identity_client_id=CLIENT_ID) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def unseal_key_pem() -> bytes:
    """One releasable key for the per-test emulators (RSA generation dominates their start-up)."""
    return key_pem(load_or_create_key(None))


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, unseal_key_pem: bytes) -> Iterator[RunningEmulator]:
    """A fresh emulator (empty vault) with the managed-identity env pointed at it."""
    with start_emulator(cce_policy_b64(), identity_client_id=CLIENT_ID, key_pem_bytes=unseal_key_pem) as running:
        for name, value in running.identity_env.items():
            monkeypatch.setenv(name, value)
        yield running


class RecordingServer:
    """A tiny JSON server on 127.0.0.1 that records every request's path and headers."""

    def __init__(self, body: dict) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.body = body
        self.requests: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                recorder.requests.append((self.path, dict(self.headers)))
                payload = json.dumps(recorder.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def recording_server() -> Iterator[type[RecordingServer]]:
    """Factory for RecordingServer instances, all closed after the test."""
    servers: list[RecordingServer] = []

    class Factory(RecordingServer):
        def __init__(self, body: dict) -> None:
            super().__init__(body)
            servers.append(self)

    yield Factory
    for server in servers:
        server.close()
