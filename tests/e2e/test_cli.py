"""The `mcp-tee` command line: safe binding, default-deny start-up, and a third-party MCP client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.canaries import assert_no_canary
from tests.support.mcp_client import mcp_session
from tests.support.server_process import ServerProcess

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env)


class TestBinding:
    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
    def test_refuses_a_non_loopback_address_without_auth(self, host, baseline_env):
        result = run_cli("serve", "--host", host, "--port", "1", env={"PATH": "/usr/bin:/bin", **baseline_env})
        assert result.returncode == 2
        assert "refusing to listen" in result.stderr and "MCP_AUTH_ISSUER" in result.stderr
        assert_no_canary([result.stdout, result.stderr], "the refusal message")

    def test_rejects_an_unknown_mode(self):
        result = run_cli("serve", env={"PATH": "/usr/bin:/bin", "MCP_TEE_MODE": "maybe"})
        assert result.returncode == 2 and "MCP_TEE_MODE" in result.stderr


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
