"""`make run`'s command, `mcp-tee dev`: every tool works offline, behind the local dev issuer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.devstack.postgres import free_port
from tests.support.mcp_client import ScriptedUser, mcp_session, text_of
from tests.support.server_process import ServerProcess

ALL_TOOLS = {"github_search_issues", "query_database", "send_notification", "attestation_status"}


def dev_server(tmp_path, *args: str, **env: str) -> ServerProcess:
    base = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    return ServerProcess({**base, "MCP_DEV_ISSUER_DIR": str(tmp_path / "issuer"), **env}, log_dir=tmp_path,
                         command="dev",
                         args=["--state-dir", str(tmp_path / "state"), "--pg-port", str(free_port()), *args])


class TestMakeRun:
    async def test_all_four_tools_work_offline_with_a_dev_token(self, tmp_path):
        server = dev_server(tmp_path)
        server.set_env(MCP_AUTH_AUDIENCE=server.url)
        server.start()
        try:
            token = subprocess.run(
                [sys.executable, "-m", "app.cli", "dev-token", "--scopes", "mcp:read,mcp:write",
                 "--audience", server.url, "--state-dir", str(tmp_path / "issuer")],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            headers = {"Authorization": f"Bearer {token}"}
            async with mcp_session(server.url, headers=headers, user=ScriptedUser("accept")) as session:
                tools = {tool.name for tool in (await session.list_tools()).tools}
                search = await session.call_tool("github_search_issues", {"query": "login"})
                query = await session.call_tool("query_database", {"sql": "SELECT count(*) FROM incidents"})
                sent = await session.call_tool("send_notification", {"message": "hello from make run"})
        finally:
            server.stop()
        assert tools == ALL_TOOLS
        for result in (search, query, sent):
            assert not result.is_error, text_of(result)
        assert query.structured_content["rows"] == [[120]]
        output = server.output()
        assert "NOT a TEE" in output or "not a TEE" in output
        assert "dev-token" in output and "hello from make run" in output

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
