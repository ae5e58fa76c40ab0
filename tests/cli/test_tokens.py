"""`mcp-tee dev-token`: finds the running server's issuer or refuses saying where it looked; scopes and TTL checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from app.auth.resource_server import BearerTokenVerifier
from app.auth.settings import AuthSettings
from app.devstack.lock import StateDirLock

REPO = Path(__file__).resolve().parents[2]


def dev_token(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "app.cli", "dev-token", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


class TestFindsTheIssuer:
    def test_outside_a_repo_it_refuses_and_creates_nothing(self, tmp_path):
        result = dev_token(tmp_path)
        assert result.returncode == 1 and result.stdout == ""
        assert "no dev issuer found" in result.stderr and str(tmp_path / ".mcp-tee") in result.stderr
        assert not (tmp_path / ".mcp-tee").exists()

    async def test_from_a_subdirectory_it_uses_the_running_servers_issuer_and_audience(self, tmp_path):
        audience = "http://127.0.0.1:18123/mcp"
        issuer_dir = tmp_path / "elsewhere" / "dev-issuer"
        lock = StateDirLock(tmp_path / ".mcp-tee")
        lock.acquire({"url": audience, "audience": audience, "issuer_dir": str(issuer_dir)})
        try:
            (tmp_path / "src").mkdir()
            result = dev_token(tmp_path / "src", "--scopes", "mcp:read,mcp:write")
        finally:
            lock.release()
        assert result.returncode == 0, result.stderr
        assert "expires" in result.stderr and "refresh" in result.stderr
        settings = AuthSettings.from_env({"MCP_AUTH_ISSUER": "dev", "MCP_AUTH_AUDIENCE": audience},
                                         dev_state_dir=issuer_dir)
        principal = await BearerTokenVerifier(settings).verify(result.stdout.strip())
        assert principal.scopes == {"mcp:read", "mcp:write"}


class TestRefusesBadRequests:
    @pytest.mark.parametrize("args, fragment", [
        (("--scopes", "mcp:admin"), "unknown scope mcp:admin"),
        (("--ttl", "0"), "--ttl must be between"),
        (("--ttl", "999999"), "--ttl must be between"),
    ])
    def test_refused_before_anything_is_minted(self, tmp_path, args, fragment):
        result = dev_token(tmp_path, "--issuer-dir", str(tmp_path / "issuer"), *args)
        assert result.returncode == 2 and fragment in result.stderr and result.stdout == ""

    def test_json_carries_the_expiry(self, tmp_path):
        import json

        result = dev_token(tmp_path, "--issuer-dir", str(tmp_path / "issuer"), "--ttl", "600", "--json")
        document = json.loads(result.stdout)
        claims = jwt.decode(document["token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 600 and document["expires_at"].endswith("+00:00")
