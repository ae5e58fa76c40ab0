"""Azurite (Microsoft's Azure Storage emulator) on loopback for tests, plus a managed-identity stand-in.

Azurite runs over HTTPS with `--oauth basic`, so the app reaches it exactly as it reaches Azure
Storage: `ManagedIdentityCredential` fetches a bearer token (here from `IdentityStandIn`, the App
Service managed-identity protocol) and the real `azure-storage-blob` client sends it. Only the
endpoints and the CA file differ. Azurite checks the token's issuer, audience and lifetime, not its
signature; the stand-in's tokens are shaped like Entra ID's for that reason. NOT a cloud.

The npm package is installed once per version into the user's cache directory, because CI machines
have no preinstalled Azurite.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.devstack.postgres import free_port
from app.emulator.server import write_tls_material

AZURITE_VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
STARTUP_TIMEOUT_S = 30.0
INSTALL_TIMEOUT_S = 300.0
TOKEN_LIFETIME_S = 3600
IDENTITY_TOKEN_PATH = "/msi/token"


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mcp-tee" / f"azurite-{AZURITE_VERSION}"


def ensure_azurite() -> Path:
    """The `azurite-blob` executable, installed with npm on first use (into a temp dir, then renamed)."""
    target = _cache_dir()
    executable = target / "node_modules" / ".bin" / "azurite-blob"
    if executable.exists():
        return executable
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to install Azurite for the audit-sink tests")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    subprocess.run(["npm", "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error",
                    f"azurite@{AZURITE_VERSION}"], check=True, timeout=INSTALL_TIMEOUT_S,
                   stdout=subprocess.DEVNULL)
    try:
        staging.rename(target)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return executable


class Azurite:
    """An `azurite-blob` process on 127.0.0.1 over HTTPS; stop and start it again on the same port and data.

    Example:
        >>> azurite = Azurite(tmp_path).start()
        >>> BlobServiceClient(azurite.account_url, credential, connection_verify=azurite.ca_file)
    """

    def __init__(self, base: Path) -> None:
        self._base = base
        self._data = base / "data"
        self._data.mkdir(parents=True, exist_ok=True)
        cert, key = write_tls_material(base)
        self.ca_file, self._key_file = str(cert), str(key)
        self.port = free_port()
        self.account_url = f"https://127.0.0.1:{self.port}/{ACCOUNT}"
        self._process: subprocess.Popen | None = None

    def start(self) -> "Azurite":
        executable = ensure_azurite()
        log = open(self._base / "azurite.log", "ab")
        self._process = subprocess.Popen(
            [str(executable), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(self._data),
             "--cert", self.ca_file, "--key", self._key_file, "--oauth", "basic", "--skipApiVersionCheck",
             "--disableProductStyleUrl", "--disableTelemetry", "--blobKeepAliveTimeout", "1", "--silent"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self._base)
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"azurite exited: {(self._base / 'azurite.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("azurite did not start")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # Azurite saves its metadata on SIGINT
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


class IdentityStandIn:
    """The App Service managed-identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) for one client id.

    Tokens carry an Entra-shaped issuer and the requested resource as audience, which is what
    Azurite's `--oauth basic` checks. `requests` records the client ids that asked.
    """

    def __init__(self, client_id: str | None = None) -> None:
        self.client_id = client_id or str(uuid.uuid4())
        self.header = secrets.token_urlsafe(16)
        self.requests: list[str | None] = []
        self._tenant = str(uuid.uuid4())
        self._signing_key = secrets.token_bytes(32)
        self.app = Starlette(routes=[Route(IDENTITY_TOKEN_PATH, self._token, methods=["GET"])])
        self.url = ""

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.url + IDENTITY_TOKEN_PATH, "IDENTITY_HEADER": self.header,
                "IDENTITY_CLIENT_ID": self.client_id}

    async def _token(self, request: Request) -> JSONResponse:
        client_id = request.query_params.get("client_id")
        self.requests.append(client_id)
        if request.headers.get("x-identity-header") != self.header or client_id != self.client_id:
            return JSONResponse({"statusCode": 400, "message": "unknown identity"}, status_code=400)
        now = int(time.time())
        resource = request.query_params.get("resource", "")
        token = jwt.encode({"iss": f"https://sts.windows.net/{self._tenant}/", "aud": resource, "iat": now,
                            "nbf": now, "exp": now + TOKEN_LIFETIME_S, "oid": client_id, "tid": self._tenant},
                           self._signing_key, algorithm="HS256")
        return JSONResponse({"access_token": token, "expires_on": str(now + TOKEN_LIFETIME_S),
                             "token_type": "Bearer", "resource": resource, "client_id": client_id})
