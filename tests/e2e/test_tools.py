"""End to end: the real `mcp-tee serve` subprocess, the official MCP client, real Postgres and stand-ins."""

from __future__ import annotations

import httpx
import pytest

from tests.support.canaries import CANARY_GITHUB_TOKEN, assert_no_canary
from tests.support.mcp_client import mcp_session, text_of

EXPECTED_TOOLS = {"github_search_issues", "query_database", "send_notification", "attestation_status"}


class TestDiscovery:
    async def test_all_four_tools_are_listed(self, server):
        async with mcp_session(server.url) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
        assert tools == EXPECTED_TOOLS

    def test_healthz_is_live_and_reveals_no_secret(self, server):
        response = httpx.get(f"{server.base_url}/healthz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        assert_no_canary([response.text], "/healthz")


class TestGitHubSearch:
    async def test_returns_issue_fields_and_sends_token_only_to_api(self, server, github_standin):
        async with mcp_session(server.url) as session:
            result = await session.call_tool("github_search_issues", {"query": "login", "repo": "acme/api", "max_results": 3})
        assert not result.is_error, text_of(result)
        body = result.structured_content
        assert body["content_trust"] == "untrusted-third-party"
        assert 1 <= len(body["issues"]) <= 3
        assert set(body["issues"][0]) == {"number", "title", "state", "url", "updated_at", "labels"}
        seen = github_standin.requests[-1]
        assert seen["token"] == CANARY_GITHUB_TOKEN and seen["api_version"] == "2022-11-28"
        assert "repo:acme/api" in seen["q"]

    @pytest.mark.parametrize(
        "arguments, fragment",
        [
            ({"query": "x", "repo": "not a repo"}, "repo"),
            ({"query": "x", "max_results": 0}, "max_results"),
            ({"query": "x", "max_results": 51}, "max_results"),
            ({"query": ""}, "query"),
            ({"query": "x" * 300}, "query"),
            ({"query": 42}, "query"),
        ],
    )
    async def test_bad_arguments_are_clear_tool_errors(self, server, github_standin, arguments, fragment):
        async with mcp_session(server.url) as session:
            result = await session.call_tool("github_search_issues", arguments)
        assert result.is_error and fragment in text_of(result)
        assert "Traceback" not in text_of(result)
        assert github_standin.requests == []

    @pytest.mark.parametrize(
        "fault, fragment",
        [
            ("500", "failing (500)"),
            ("502", "failing (502)"),
            ("429", "rate limit"),
            ("hang", "did not answer within"),
            ("close", "unreachable"),
            ("redirect", "not followed"),
        ],
    )
    async def test_upstream_failures_are_clear_and_server_survives(self, server, github_standin, fault, fragment):
        github_standin.fault = fault
        async with mcp_session(server.url) as session:
            result = await session.call_tool("github_search_issues", {"query": "login"})
            assert result.is_error and fragment in text_of(result), text_of(result)
            github_standin.fault = None
            again = await session.call_tool("github_search_issues", {"query": "login"})
        assert not again.is_error
        assert server.alive()


class TestAttestationStatusNonTee:
    async def test_reports_not_in_tee_with_seed_compatible_fields(self, server):
        async with mcp_session(server.url) as session:
            result = await session.call_tool("attestation_status", {})
        body = result.structured_content
        assert body["running_in_tee"] is False and body["tee_type"] == "none"
        assert {"server", "version", "secrets_loaded", "timestamp", "secrets_source", "disabled_capabilities"} <= set(body)
        assert body["secrets_loaded"] == {"github-token": True, "db-connection-string": True, "webhook-url": True}
        assert body["secrets_source"] == "env"
        assert "content_trust" not in body, "the server's own report is not third-party data"
        assert_no_canary([text_of(result)], "attestation_status")

    async def test_a_malformed_nonce_is_refused(self, server):
        async with mcp_session(server.url) as session:
            result = await session.call_tool("attestation_status", {"nonce": "short"})
        assert result.is_error and "nonce" in text_of(result)


class TestNoLeaks:
    async def test_server_output_never_contains_a_canary(self, server):
        """Runs last in this module: everything the server printed so far must be clean."""
        async with mcp_session(server.url) as session:
            await session.call_tool("query_database", {"sql": "SELECT pg_sleep(1)"})
            await session.call_tool("github_search_issues", {"query": "zzz"})
        assert_no_canary([server.output()], "the server's logs")
