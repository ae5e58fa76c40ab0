"""Stack boots: each committed stack's app container, run exactly as its ContainerGroup says, reaches ready
and serves `mcp-tee agent --stack-outputs` with that stack's outputs.

The command and env come from the ContainerGroup under mocks. The server answers over HTTPS only
(the attested channel), and the agent pins the TLS key the attestation binds before its token leaves. What changes, and only that:
- endpoints: the TEE ones (SKR sidecar, MAA, vault) point at the emulator, and the token issuer's
  (MCP_AUTH_ISSUER, MCP_AUTH_JWKS_URL) at a loopback stand-in for Entra, since TEE mode differs
  from Azure only in endpoints; the audience stays the stack's own;
- the port: `--port 8443` becomes a free port (a fixed port would collide);
- additions the real host provides: the managed-identity endpoint, the emulator's CA (AKV_CA_FILE),
  and MAA_ISSUER, because the emulator issues over loopback http;
- the audit sink: a file instead of the stack's storage account (the blob sink is tested against Azurite).
The emulator runs the stack's own CCE policy, so its hostdata is the stack's `expected_hostdata`.
Issue 12's items 1 and 7 and the dropped-env refusal fail here if they regress.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.devstack.postgres import free_port
from app.emulator.server import start_emulator
from tests.components.harness import (TEST_SECRETS, ProgramRun, app_container, app_env, deployed_release_policy,
                                      run_program)
from tests.support.canaries import ALL_CANARIES

VENV_BIN = Path(sys.executable).parent
GROUP = "azure-native:containerinstance:ContainerGroup"
READY_TIMEOUT_S = 60.0  # a loaded 2-core machine starts a server slowly
SECRET_NAMES = {"mcp-tee:githubToken": "github-token", "mcp-tee:dbConnectionString": "db-connection-string",
                "mcp-tee:webhookUrl": "webhook-url"}


class EntraStandIn:
    """A loopback token issuer: its JWKS over http (allowed on loopback) and RS256 tokens like Entra's."""

    def __init__(self) -> None:
        from tests.support.emulator_fixtures import RecordingServer

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        self._server = RecordingServer({"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]})
        self.jwks_url = f"{self._server.url}/discovery/keys"
        self.issuer = f"{self._server.url}/tenant/"

    def token(self, audience: str, scopes: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": audience, "sub": "agent-user", "scp": scopes, "iat": now,
                  "nbf": now, "exp": now + 600}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def close(self) -> None:
        self._server.close()


def _command(group, port: int) -> list[str]:
    command = list(app_container(group)["command"])
    at = command.index("--port")
    command[at + 1] = str(port)
    return command


def _ready(port: int, process: subprocess.Popen) -> None:
    """Wait for /healthz over HTTPS: in TEE mode the server serves the attested channel only."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the deployed command exited with {process.returncode}")
        try:
            # The certificate is self-signed by design: the agent pins its key through attestation.
            if httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the deployed command did not become ready over https")


@pytest.fixture(scope="module")
def entra() -> EntraStandIn:
    issuer = EntraStandIn()
    yield issuer
    issuer.close()


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request) -> ProgramRun:
    return run_program(request.param)


@pytest.fixture(scope="module")
def booted(stack: ProgramRun, entra: EntraStandIn, tmp_path_factory: pytest.TempPathFactory):
    """The stack's first group, started from the venv against the emulator; yields (run, url, emulator)."""
    tmp_path = tmp_path_factory.mktemp("boot")
    group = stack.of_type(GROUP)[0]
    deployed = app_env(group)
    policy = group.inputs["confidentialComputeProperties"]["ccePolicy"]
    # The key's own release policy, as deployed; only its authority moves to the emulator standing in for MAA.
    port = free_port()
    release_policy = deployed_release_policy(stack)
    for branch in release_policy["anyOf"]:
        branch["authority"] = f"http://127.0.0.1:{port}"
    with start_emulator(policy, release_policy=release_policy, port=port, key_name=deployed["SKR_KEY_NAME"],
                        identity_client_id=deployed["IDENTITY_CLIENT_ID"]) as emulator:
        for key, name in SECRET_NAMES.items():
            emulator.put_sealed_secret(name, TEST_SECRETS[key].encode())
        env = {**deployed, "SKR_ENDPOINT": emulator.sidecar_url, "MAA_ENDPOINT": emulator.maa_endpoint,
               "AKV_ENDPOINT": emulator.akv_endpoint, "MCP_AUTH_ISSUER": entra.issuer,
               "MCP_AUTH_JWKS_URL": entra.jwks_url, "PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path),
               "AKV_CA_FILE": emulator.ca_file, "MAA_ISSUER": emulator.issuer, **emulator.identity_env,
               # The deployed blob sink would need the stack's real storage account; its code path runs
               # against Azurite in tests/audit/test_server_audit_store.py. Here the trail goes to a file.
               "MCP_AUDIT_SINK": "file", "MCP_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
        port = free_port()
        log = open(tmp_path / "server.log", "wb")
        process = subprocess.Popen(_command(group, port), env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=tmp_path)
        try:
            _ready(port, process)
            yield stack, f"https://127.0.0.1:{port}/mcp", emulator
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()
        output = (tmp_path / "server.log").read_text(errors="replace")
        assert not any(canary in output for canary in ALL_CANARIES)


class TestStackBoots:
    def test_deployed_command_reaches_ready_and_serves_the_agent(self, booted, entra: EntraStandIn,
                                                                 tmp_path: Path) -> None:
        run, url, emulator = booted
        outputs = tmp_path / "stack.json"
        outputs.write_text(json.dumps(run.stack_outputs))
        token = entra.token(run.stack_outputs["auth_audience"], "mcp:read")
        result = subprocess.run(
            [str(VENV_BIN / "mcp-tee"), "agent", url, "--stack-outputs", str(outputs),
             "--trust-dev-issuer", emulator.issuer, "--auth-token-env", "MCP_TOKEN", "--json"],
            env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "MCP_TOKEN": token},
            capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        report = json.loads(result.stdout)
        assert report["verified"] is True
        assert report["hostdata"] == emulator.hostdata == run.stack_outputs["expected_hostdata"]
        assert report["tls_spki_sha256"], "the agent pinned the attested TLS key before sending the token"

    def test_plain_http_is_off_in_the_deployed_group(self, booted) -> None:
        _, url, _ = booted
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://").replace("/mcp", "/healthz"), timeout=5)

    def test_a_token_for_another_audience_is_refused(self, booted, entra: EntraStandIn) -> None:
        _, url, _ = booted
        token = entra.token("https://contoso.onmicrosoft.com/some-other-api", "mcp:read")
        response = httpx.post(url, headers={"Authorization": f"Bearer {token}"}, json={}, verify=False, timeout=10)
        assert response.status_code == 401
        assert "audience" in response.json()["error_description"]


class TestDroppedEnvStopsTheDeployedCommand:
    def test_the_deployed_command_refuses_to_start(self, prod_run: ProgramRun, tmp_path: Path) -> None:
        # Each variable in turn is dropped in tests/test_config.py; here the real deployed command, once.
        dropped = "MCP_AUDIT_SINK"
        group = prod_run.of_type(GROUP)[0]
        env = {k: v for k, v in app_env(group).items() if k != dropped}
        result = subprocess.run(_command(group, free_port()), env={**env, "PATH": f"{VENV_BIN}:/usr/bin:/bin",
                                                                   "HOME": str(tmp_path)},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert f"pins {dropped} but the environment lacks it" in result.stderr
