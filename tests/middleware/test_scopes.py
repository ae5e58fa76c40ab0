"""Default-deny visibility: undeclared tools never appear, scopes filter tools/list and tools/call."""

from __future__ import annotations

import pytest

from app.auth.principal import Principal, PrincipalProvider
from app.errors import CapabilityDenied
from tests.support.stack import READ_ONLY, READ_WRITE, Stack


async def _names(stack: Stack) -> set[str]:
    async with stack.client() as client:
        return {tool.name for tool in await client.list_tools()}


class TestUndeclaredToolHidden:
    async def test_registered_but_undeclared_tool_is_not_listed(self, tmp_path):
        names = await _names(Stack(tmp_path))
        assert "debug_dump_env" not in names
        assert {"github_search_issues", "query_database", "send_notification", "attestation_status"} <= names

    async def test_direct_call_is_refused_vaguely(self, tmp_path):
        async with Stack(tmp_path).client() as client:
            result = await client.call_tool("debug_dump_env", {}, raise_on_error=False)
        assert result.is_error
        assert result.content[0].text == "unknown tool or not permitted"


class TestScopeFiltering:
    async def test_read_only_caller_does_not_see_the_write_tool(self, tmp_path):
        names = await _names(Stack(tmp_path, scopes=READ_ONLY))
        assert "send_notification" not in names
        assert "query_database" in names

    async def test_read_write_caller_sees_it(self, tmp_path):
        assert "send_notification" in await _names(Stack(tmp_path, scopes=READ_WRITE))

    async def test_direct_call_without_scope_gets_insufficient_scope(self, tmp_path):
        async with Stack(tmp_path, scopes=READ_ONLY).client() as client:
            result = await client.call_tool("send_notification", {"message": "hi"}, raise_on_error=False)
        assert result.is_error
        assert "insufficient scope" in result.content[0].text and "mcp:write" in result.content[0].text

    async def test_call_with_scope_succeeds(self, tmp_path):
        async with Stack(tmp_path, scopes=READ_WRITE).client() as client:
            result = await client.call_tool("send_notification", {"message": "hi"})
        assert not result.is_error


class TestFailClosed:
    async def test_auth_enabled_without_verified_principal_lists_nothing(self, tmp_path):
        assert await _names(Stack(tmp_path, auth_enabled=True)) == set()

    async def test_auth_enabled_without_verified_principal_cannot_call(self, tmp_path):
        async with Stack(tmp_path, auth_enabled=True).client() as client:
            result = await client.call_tool("query_database", {"sql": "select 1"}, raise_on_error=False)
        assert result.is_error and "authentication required" in result.content[0].text

    def test_provider_denies_when_auth_is_on_and_no_request(self):
        with pytest.raises(CapabilityDenied):
            PrincipalProvider(auth_enabled=True)()

    def test_provider_gives_local_principal_when_auth_is_off(self):
        assert PrincipalProvider(auth_enabled=False, local_scopes=READ_ONLY)() == Principal("local-dev", READ_ONLY)
