"""The `mcp-tee` command line: safe binding, default-deny start-up, and a third-party MCP client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from app.cli import main
from app.server.run import refuse_exposed_bind_without_auth
from app.config import load_settings
from tests.support.canaries import assert_no_canary
from tests.support.mcp_client import mcp_session
from tests.support.server_process import ServerProcess

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env)


class TestBinding:
    def test_the_cli_refuses_a_non_loopback_address_without_auth(self, baseline_env):
        result = run_cli("serve", "--host", "0.0.0.0", "--port", "1", env={"PATH": "/usr/bin:/bin", **baseline_env})
        assert result.returncode == 2
        assert "refusing to listen" in result.stderr and "MCP_AUTH_ISSUER" in result.stderr
        assert_no_canary([result.stdout, result.stderr], "the refusal message")

    @pytest.mark.parametrize("host", ["::", "10.1.2.3", "example.com"])
    def test_other_exposed_addresses_are_refused_too(self, host, monkeypatch, capsys):
        monkeypatch.delenv("MCP_AUTH_ISSUER", raising=False)
        assert main(["serve", "--host", host, "--port", "1"]) == 2
        assert "refusing to listen" in capsys.readouterr().err

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
    def test_loopback_needs_no_auth(self, host):
        refuse_exposed_bind_without_auth(load_settings({}, host=host))

    def test_any_address_is_allowed_once_auth_is_configured(self, tmp_path):
        env = {"MCP_AUTH_ISSUER": "dev", "MCP_DEV_ISSUER_DIR": str(tmp_path), "MCP_AUTH_AUDIENCE": "https://mcp.example.com/mcp"}
        refuse_exposed_bind_without_auth(load_settings(env, host="0.0.0.0"))

    def test_half_configured_auth_is_refused(self, monkeypatch, capsys):
        monkeypatch.setenv("MCP_AUTH_ISSUER", "https://login.example.com/")
        monkeypatch.delenv("MCP_AUTH_JWKS_URL", raising=False)
        assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
        assert "MCP_AUTH_JWKS_URL" in capsys.readouterr().err

    def test_rejects_an_unknown_mode(self, monkeypatch, capsys):
        monkeypatch.setenv("MCP_TEE_MODE", "maybe")
        assert main(["serve", "--port", "1"]) == 2
        assert "MCP_TEE_MODE" in capsys.readouterr().err


class TestDefaultDeny:
    async def test_a_tool_without_its_credential_is_not_exposed(self, postgres, tmp_path):
        server = ServerProcess({"DB_CONNECTION_STRING": postgres.reader_dsn}, log_dir=tmp_path).start()
        try:
            async with mcp_session(server.url) as session:
                tools = {tool.name for tool in (await session.list_tools()).tools}
                direct = await session.call_tool("send_notification", {"message": "hi"})
                status = (await session.call_tool("attestation_status", {})).structured_content
        finally:
            server.stop()
        assert tools == {"query_database", "attestation_status"}
        assert direct.is_error
        assert status["secrets_loaded"] == {"github-token": False, "db-connection-string": True, "webhook-url": False}
        assert "GITHUB_TOKEN" in status["disabled_capabilities"]["github_search_issues"]
        assert "WEBHOOK_URL" in status["disabled_capabilities"]["send_notification"]


@pytest.mark.skipif(shutil.which("npx") is None, reason="Node's npx is not installed, so the Inspector cannot run")
class TestThirdPartyClient:
    def inspector(self, url: str, *args: str) -> dict:
        result = subprocess.run(
            ["npx", "-y", INSPECTOR, "--cli", url, "--transport", "http", *args],
            capture_output=True, text=True, timeout=240,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)

    def test_inspector_lists_and_calls_tools(self, server):
        listed = self.inspector(server.url, "--method", "tools/list")
        assert {tool["name"] for tool in listed["tools"]} >= {"query_database", "attestation_status"}
        called = self.inspector(server.url, "--method", "tools/call", "--tool-name", "query_database",
                                "--tool-arg", "sql=SELECT count(*) AS n FROM issues")
        assert called["structuredContent"]["rows"] == [[300]]

    def test_a_write_through_the_inspector_is_refused_saying_why(self, server, webhook_sink):
        # The Inspector's CLI declares no elicitation: it must not read as "the user cancelled".
        result = subprocess.run(
            ["npx", "-y", INSPECTOR, "--cli", server.url, "--transport", "http", "--method", "tools/call",
             "--tool-name", "send_notification", "--tool-arg", "message=hi"],
            capture_output=True, text=True, timeout=240,
        )
        assert "this client cannot show confirmation prompts" in result.stdout
        assert webhook_sink.posts == []
