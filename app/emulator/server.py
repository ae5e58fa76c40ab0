"""Runs the emulator: the plain-HTTP sidecar/issuer app and the TLS vault app on loopback, in threads.

NOT A TEE. ``start_emulator`` is the Python entry point for tests and the demo;
``mcp-tee emulator`` wraps it for the command line. Both bind 127.0.0.1 only.
"""

from __future__ import annotations

import ipaddress
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.emulator.issuer import MaaIssuer, self_signed_certificate
from app.emulator.keystore import KeyStore, key_pem, load_or_create_key
from app.emulator.sidecar_api import IDENTITY_TOKEN_PATH, build_sidecar_app
from app.emulator.emulator_state import EmulatorState
from app.emulator.vault_api import build_vault_app
from app.secrets.jwe import seal
from policy.release_policy import build_release_policy, hostdata_of

LOOPBACK = "127.0.0.1"
DEFAULT_KEY_NAME = "mcp-tee-unseal"
STARTUP_TIMEOUT_S = 10.0


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    return sock


def write_tls_material(directory: Path) -> tuple[Path, Path]:
    """Write a fresh self-signed loopback certificate and its key; return (cert = CA file, key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))])
    cert = self_signed_certificate(key, "mcp-tee emulator vault (NOT A TEE)", san=san)
    cert_file, key_file = directory / "vault-tls.crt", directory / "vault-tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key_pem(key))
    return cert_file, key_file


class _ServerThread:
    """One uvicorn server on a pre-bound socket in a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket, **ssl: Any) -> None:
        self._sock = sock
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **ssl))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("emulator server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        # A test harness must not wait for clients' idle keep-alive connections to drain.
        self._server.force_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()


@dataclass
class RunningEmulator:
    """A started emulator; use as a context manager or call :meth:`stop`.

    Args:
        state: The shared state (issuer, key store, secrets).
        sidecar_url: Base URL of the SKR sidecar API (``SKR_ENDPOINT``).
        ca_file: PEM file that verifies the vault stand-in's TLS certificate.
    """

    state: EmulatorState
    sidecar_url: str
    ca_file: str
    _servers: tuple[_ServerThread, ...] = ()
    _tempdir: tempfile.TemporaryDirectory | None = None

    @property
    def issuer(self) -> str:
        """The MAA issuer URL (``iss``; ``--issuer`` for verify-token)."""
        return self.state.issuer.issuer_url

    @property
    def maa_endpoint(self) -> str:
        """The MAA host (``MAA_ENDPOINT``)."""
        return self.state.maa_endpoint

    @property
    def vault_url(self) -> str:
        """The vault stand-in URL (``https://`` + ``AKV_ENDPOINT``)."""
        return self.state.vault_url

    @property
    def akv_endpoint(self) -> str:
        """The vault host, no scheme (``AKV_ENDPOINT``)."""
        return self.state.akv_endpoint

    @property
    def hostdata(self) -> str:
        """SHA-256 of the CCE policy this emulator pretends to run."""
        return self.state.issuer.hostdata

    @property
    def key_name(self) -> str:
        """The releasable key's name (``SKR_KEY_NAME``)."""
        return self.state.keystore.name

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The releasable key's public half (what ``seal --public-key`` uses)."""
        return self.state.keystore.key.public_key()

    @property
    def identity_env(self) -> dict[str, str]:
        """Env vars that point ``ManagedIdentityCredential`` at this emulator (App Service protocol)."""
        return {"IDENTITY_ENDPOINT": self.sidecar_url + IDENTITY_TOKEN_PATH, "IDENTITY_HEADER": self.state.identity_header}

    def put_sealed_secret(self, name: str, plaintext: bytes) -> str:
        """Seal ``plaintext`` to the key and store it as vault secret ``name``; return the sealed value."""
        sealed = seal(plaintext, self.public_key, kid=self.key_name)
        self.state.put_secret(name, sealed)
        return sealed

    def stop(self) -> None:
        """Stop both servers and remove the temporary TLS material."""
        for server in self._servers:
            server.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(cce_policy_b64: str, *, release_policy: Mapping[str, Any] | None = None,
                   key_pem_bytes: bytes | None = None, key_name: str = DEFAULT_KEY_NAME,
                   identity_client_id: str | None = None, port: int = 0, vault_port: int = 0,
                   state_dir: Path | None = None) -> RunningEmulator:
    """Start an emulator on loopback and return once both servers accept connections.

    Args:
        cce_policy_b64: The base64 CCE policy (as ``az confcom --print-policy`` prints it); hostdata is its hash.
        release_policy: The key's release policy; default pins this emulator's hostdata and issuer.
        key_pem_bytes: PEM of the releasable RSA key (keep it to reopen earlier seals); default: a fresh key.
        key_name: The key's name.
        identity_client_id: The only client id the identity endpoint serves (None: any).
        port: Port of the sidecar/issuer app (0: a free one).
        vault_port: Port of the TLS vault app (0: a free one).
        state_dir: Where the vault's TLS certificate and the stored secrets live (default: a
            temporary directory, removed on stop).

    Example:
        >>> with start_emulator(policy_b64) as emu:  # doctest: +SKIP
        ...     emu.put_sealed_secret("github-token", b"ghp_...")
    """
    hostdata = hostdata_of(cce_policy_b64)
    plain_sock, vault_sock = _bind(port), _bind(vault_port)
    issuer_url = f"http://{LOOPBACK}:{plain_sock.getsockname()[1]}"
    vault_url = f"https://{LOOPBACK}:{vault_sock.getsockname()[1]}"
    maa_endpoint = issuer_url.removeprefix("http://")
    policy = release_policy or build_release_policy(maa_endpoint, hostdata, authority=issuer_url)
    state = EmulatorState(issuer=MaaIssuer(issuer_url, hostdata),
                          keystore=KeyStore(key_name, load_or_create_key(key_pem_bytes), policy),
                          maa_endpoint=maa_endpoint, vault_url=vault_url, identity_client_id=identity_client_id,
                          secrets_file=state_dir / "vault-secrets.json" if state_dir else None)
    state.load_secrets()
    tempdir = None if state_dir else tempfile.TemporaryDirectory(prefix="mcp-tee-emulator-")
    cert_file, key_file = write_tls_material(state_dir or Path(tempdir.name))
    servers = (_ServerThread(build_sidecar_app(state), plain_sock),
               _ServerThread(build_vault_app(state), vault_sock, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)))
    running = RunningEmulator(state=state, sidecar_url=issuer_url, ca_file=str(cert_file), _servers=servers,
                              _tempdir=tempdir)
    try:
        for server in servers:
            server.start()
    except BaseException:
        running.stop()
        raise
    return running
