"""The capability stack in the real server: bearer auth with the dev issuer, scopes, and the audit trail."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from fastmcp import Client

from app.auth.dev_issuer import DevIssuer
from app.wire.runtime_data import tools_digest
from tests.support.canaries import assert_no_canary
from tests.support.mcp_client import ScriptedUser, mcp_session, text_of
from tests.support.server_process import ServerProcess


@pytest.fixture(scope="module")
def authed_server(baseline_env, tmp_path_factory):
    state = tmp_path_factory.mktemp("auth")
    env = {**baseline_env, "MCP_AUTH_ISSUER": "dev", "MCP_DEV_ISSUER_DIR": str(state / "issuer"),
           "MCP_AUDIT_LOG": str(state / "audit.jsonl")}
    process = ServerProcess(env, log_dir=state)
    process.set_env(MCP_AUTH_AUDIENCE=process.url)  # the audience is the server's own canonical URL
    process.start()
    process.issuer = DevIssuer(state / "issuer")
    process.audit_path = state / "audit.jsonl"
    yield process
    process.stop()


def bearer(server, *scopes: str, audience: str | None = None, subject: str = "alice") -> dict[str, str]:
    token = server.issuer.mint(scopes=scopes, audience=audience or server.url, subject=subject)
    return {"Authorization": f"Bearer {token}"}


class TestBearerAuth:
    def test_no_token_gets_401_pointing_at_resource_metadata(self, authed_server):
        response = httpx.post(authed_server.url, json={})
        assert response.status_code == 401
        assert "resource_metadata=" in response.headers["www-authenticate"]
        metadata = httpx.get(f"{authed_server.base_url}/.well-known/oauth-protected-resource").json()
        assert metadata["resource"] == authed_server.url

    async def test_a_token_for_another_audience_is_refused(self, authed_server):
        headers = bearer(authed_server, "mcp:read", audience="http://127.0.0.1:1/mcp")
        assert httpx.post(authed_server.url, json={}, headers=headers).status_code == 401

    def test_a_token_in_the_query_string_is_refused(self, authed_server):
        token = authed_server.issuer.mint(scopes=["mcp:read"], audience=authed_server.url)
        assert httpx.post(f"{authed_server.url}?access_token={token}", json={}).status_code in (400, 401)

    async def test_read_scope_sees_and_calls_only_read_tools(self, authed_server):
        async with mcp_session(authed_server.url, headers=bearer(authed_server, "mcp:read")) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            write = await session.call_tool("send_notification", {"message": "hi"})
            read = await session.call_tool("query_database", {"sql": "SELECT 1"})
        assert "send_notification" not in tools and "query_database" in tools
        assert write.is_error and not read.is_error

    async def test_read_write_scope_sees_everything(self, authed_server):
        headers = bearer(authed_server, "mcp:read", "mcp:write")
        async with mcp_session(authed_server.url, headers=headers, user=ScriptedUser("accept")) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            sent = await session.call_tool("send_notification", {"message": "scoped hello"})
        assert {"send_notification", "github_search_issues", "query_database", "attestation_status"} <= tools
        assert not sent.is_error, text_of(sent)

    async def test_attestation_status_digests_the_tools_each_scope_set_sees(self, authed_server):
        # The digest is cached per scope set: a second caller with other scopes must not get the first one's.
        digests = {}
        for scopes in (("mcp:read",), ("mcp:read", "mcp:write"), ("mcp:read",)):
            async with mcp_session(authed_server.url, headers=bearer(authed_server, *scopes)) as session:
                visible = (await session.list_tools()).tools
                status = (await session.call_tool("attestation_status", {})).structured_content
            assert status["tools_digest"] == tools_digest(visible), scopes
            digests.setdefault(scopes, set()).add(status["tools_digest"])
        assert len(digests[("mcp:read",)]) == 1 and digests[("mcp:read",)] != digests[("mcp:read", "mcp:write")]


class TestSessionOwnership:
    def test_another_principal_cannot_use_a_session_it_did_not_open(self, authed_server):
        """A session id travels in a header; knowing it must not let a different caller in."""
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
        alice = {**headers, **bearer(authed_server, "mcp:read", subject="alice")}
        opened = httpx.post(authed_server.url, json=init, headers=alice)
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        mallory = {**headers, **bearer(authed_server, "mcp:read", subject="mallory"), **session}
        assert httpx.post(authed_server.url, json=listing, headers=mallory).status_code == 404
        assert httpx.post(authed_server.url, json=listing, headers={**alice, **session}).status_code == 200


def audit_records(server, expect=lambda records: True, within_s: float = 10.0) -> list[dict]:
    """The audit log's records, once `expect` holds (records are written by a background thread)."""
    deadline = time.monotonic() + within_s
    while True:
        records = [json.loads(line) for line in server.audit_path.read_text().splitlines() if line.strip()]
        if expect(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


class TestAuditClassification:
    """Issue 10: every denial is audited as a denial, and only a delivered write is `ok`."""

    async def test_a_refused_sql_is_audited_as_denied_by_the_guard(self, authed_server):
        async with mcp_session(authed_server.url, headers=bearer(authed_server, "mcp:read", subject="sql-probe")) as s:
            refused = await s.call_tool("query_database", {"sql": "DELETE FROM issues"})
        assert refused.is_error
        mine = lambda r: r.get("principal") == "sql-probe"  # noqa: E731
        record = [r for r in audit_records(authed_server, lambda rs: any(map(mine, rs))) if mine(r)][-1]
        assert record["decision"]["allowed"] is False
        assert record["decision"]["layer"] == "sql_guard"
        assert record["outcome"]["status"] == "error"

    def test_a_401_is_audited_and_logged_without_the_token(self, authed_server):
        forged = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.forged-signature-canary"
        response = httpx.post(authed_server.url, json={}, headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401
        def forged_refusal(record: dict) -> bool:
            return record["type"] == "http" and record["outcome"]["status"] == "401" and record["decision"] == {
                "allowed": False, "layer": "auth", "reason": "malformed token"}

        records = audit_records(authed_server, lambda rs: any(map(forged_refusal, rs)))
        assert any(map(forged_refusal, records)), [r for r in records if r["type"] == "http"]
        deadline = time.monotonic() + 10
        while "refused POST /mcp: 401" not in authed_server.output() and time.monotonic() < deadline:
            time.sleep(0.05)  # the log line is written by another process
        assert "refused POST /mcp: 401" in authed_server.output()
        assert "forged-signature-canary" not in authed_server.audit_path.read_text()
        assert "forged-signature-canary" not in authed_server.output()

    async def test_a_confirmation_question_is_not_audited_as_ok(self, authed_server, webhook_sink):
        """MCP 2026-07-28 (FastMCP's client): the question is `input_required`, the delivery `ok`."""

        async def accept(message, response_type, params, context):
            return True

        token = authed_server.issuer.mint(scopes=["mcp:read", "mcp:write"], audience=authed_server.url,
                                          subject="modern-writer")
        async with Client(authed_server.url, auth=token, elicitation_handler=accept) as client:
            result = await client.call_tool("send_notification", {"message": "audit me", "channel": "ops"})
        assert not result.is_error
        mine = lambda r: r.get("principal") == "modern-writer" and r.get("tool") == "send_notification"  # noqa: E731
        statuses = [r["outcome"]["status"] for r in audit_records(authed_server, lambda rs: sum(map(mine, rs)) >= 2)
                    if mine(r)]
        assert statuses == ["input_required", "ok"]

    async def test_a_declined_write_is_audited_as_not_sent(self, authed_server):
        """Up to 2025-11-25 (the official client's handshake): a decline means `not_sent`, never `ok`."""
        headers = bearer(authed_server, "mcp:read", "mcp:write", subject="decliner")
        async with mcp_session(authed_server.url, headers=headers, user=ScriptedUser("decline")) as session:
            declined = await session.call_tool("send_notification", {"message": "no thanks"})
        assert declined.is_error
        mine = lambda r: r.get("principal") == "decliner"  # noqa: E731
        record = [r for r in audit_records(authed_server, lambda rs: any(map(mine, rs))) if mine(r)][-1]
        assert record["outcome"]["status"] == "not_sent"
        assert record["decision"] == {"allowed": False, "layer": "confirmation", "reason": record["decision"]["reason"]}


class TestAuditTrail:
    async def test_every_call_is_audited_chained_signed_and_secret_free(self, authed_server, tmp_path):
        headers = bearer(authed_server, "mcp:read", subject="auditor")
        async with mcp_session(authed_server.url, headers=headers) as session:
            status = (await session.call_tool("attestation_status", {})).structured_content
            await session.call_tool("query_database", {"sql": "SELECT id FROM issues LIMIT 3"})
            await session.call_tool("query_database", {"sql": "DELETE FROM issues"})
            await session.call_tool("send_notification", {"message": "denied: no write scope"})
        authed_server.stop()
        lines = [json.loads(line) for line in authed_server.audit_path.read_text().splitlines()]
        calls = [line for line in lines if line.get("principal") == "auditor"]
        assert [call["tool"] for call in calls] == ["attestation_status", "query_database", "query_database",
                                                    "send_notification"]
        assert any(call["decision"] != "allowed" or call["outcome"] != "ok" for call in calls)
        assert len(calls[1]["summary"]["sql_fingerprint"]) == 16 and calls[1]["summary"]["row_count"] == 3
        assert "DELETE" not in authed_server.audit_path.read_text()
        assert_no_canary([authed_server.audit_path.read_text(), authed_server.output()], "the audit log or logs")
        verify = [sys.executable, "-m", "app.cli", "audit", "verify", str(authed_server.audit_path),
                  "--public-key", status["audit_public_key"]]
        assert subprocess.run(verify, capture_output=True, text=True).returncode == 0
        tampered = tmp_path / "tampered.jsonl"
        original = authed_server.audit_path.read_text().splitlines()
        tampered.write_text("\n".join(original[:2] + original[3:]) + "\n")
        verify[5] = str(tampered)
        result = subprocess.run(verify, capture_output=True, text=True)
        assert result.returncode == 1 and "line" in result.stderr
