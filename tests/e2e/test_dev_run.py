"""`make run`'s command, `mcp-tee dev`: every tool works offline behind the dev issuer; stdio for one local user."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from app.devstack.postgres import free_port
from tests.support.mcp_client import ScriptedUser, mcp_session, text_of
from tests.support.server_process import ServerProcess

ALL_TOOLS = {"github_search_issues", "query_database", "send_notification", "attestation_status"}
REPO = Path(__file__).resolve().parents[2]


def dev_server(tmp_path, *args: str, state_dir: Path | None = None, **env: str) -> ServerProcess:
    base = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    return ServerProcess({**base, "MCP_DEV_ISSUER_DIR": str(tmp_path / "issuer"), **env}, log_dir=tmp_path,
                         command="dev",
                         args=["--state-dir", str(state_dir or tmp_path / "state"), "--pg-port", str(free_port()),
                               *args])


def cli(*args: str, cwd: Path = REPO, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "MCP_DEV_ISSUER_DIR"}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env, input=stdin)


class TestMakeRun:
    async def test_all_four_tools_work_offline_with_a_dev_token(self, tmp_path):
        project = tmp_path / "project"
        (project / "src").mkdir(parents=True)
        server = dev_server(tmp_path, state_dir=project / ".mcp-tee")
        server.start()
        try:
            # dev-token run from a subdirectory finds the running server's issuer and audience by itself
            token = cli("dev-token", "--scopes", "mcp:read,mcp:write", cwd=project / "src").stdout.strip()
            headers = {"Authorization": f"Bearer {token}"}
            async with mcp_session(server.url, headers=headers, user=ScriptedUser("accept")) as session:
                tools = {tool.name for tool in (await session.list_tools()).tools}
                search = await session.call_tool("github_search_issues", {"query": "login"})
                query = await session.call_tool("query_database", {"sql": "SELECT count(*) FROM incidents"})
                sent = await session.call_tool("send_notification", {"message": "hello from make run"})
            second = cli("dev", "--state-dir", str(project / ".mcp-tee"), "--port", str(free_port()))
            tokenless = cli("agent", server.url, "--expect-hostdata", "ab" * 32, "--trust-dev-issuer",
                            "http://127.0.0.1:9")
            async with mcp_session(server.url, headers=headers) as session:  # the first one still serves
                still = await session.call_tool("query_database", {"sql": "SELECT 1"})
        finally:
            exit_code = server.stop()
        assert tools == ALL_TOOLS
        for result in (search, query, sent, still):
            assert not result.is_error, text_of(result)
        assert query.structured_content["rows"] == [[120]]
        assert second.returncode == 2 and f"pid {server.pid}" in second.stderr and "--state-dir" in second.stderr
        assert "401: the server wants a bearer token; pass --auth-token-env VAR" in tokenless.stdout
        output = server.output()
        assert "NOT a TEE" in output or "not a TEE" in output
        assert "dev-token" in output and "hello from make run" in output
        assert "inspector@2.12.0" in output and "--live" in output and "new on every restart" in output
        assert exit_code == 0 and "Traceback" not in output

    def test_a_busy_port_is_refused_before_anything_starts(self, tmp_path):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = cli("dev", "--state-dir", str(tmp_path / "other"), "--port", str(taken.getsockname()[1]))
        assert busy.returncode == 2 and "cannot listen on" in busy.stderr and "--port" in busy.stderr
        assert "Traceback" not in busy.stderr and "serving MCP" not in busy.stderr
        assert not (tmp_path / "other" / "pg").exists()

    @pytest.mark.parametrize("bindir", ["/nonexistent/postgres/bin"])
    async def test_without_postgres_binaries_the_server_still_starts(self, tmp_path, bindir):
        server = dev_server(tmp_path, "--no-auth", PG_BINDIR=bindir)
        server.start()
        try:
            async with mcp_session(server.url) as session:
                tools = {tool.name for tool in (await session.list_tools()).tools}
        finally:
            server.stop()
        assert tools == ALL_TOOLS - {"query_database"}
        assert "query_database is disabled" in server.output() and "DB_CONNECTION_STRING" in server.output()


class TestStdio:
    async def test_the_client_config_stdio_entry_serves_every_tool(self, tmp_path, baseline_env):
        entry = json.loads(cli("client-config", "--client", "json").stdout)["mcpServers"]["mcp-tee"]
        args = entry["args"]
        args[args.index("--state-dir") + 1] = str(tmp_path / "stdio")
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MCP_AUTH_ISSUER": "dev", **baseline_env}
        with open(tmp_path / "stderr.log", "w") as errlog:
            params = StdioServerParameters(command=entry["command"], args=args, env=env, cwd=str(tmp_path))
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    status = await session.call_tool("attestation_status", {})
                    query = await session.call_tool("query_database", {"sql": "SELECT count(*) FROM issues"})
        assert tools == ALL_TOOLS
        assert not status.is_error and not query.is_error, text_of(query)
        startup = (tmp_path / "stderr.log").read_text()
        assert "stdio transport: one local user" in startup and "mcp:read, mcp:write" in startup
