"""Delegated capabilities in the real server over streamable HTTP: mint, narrow, present, enforce, revoke, audit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest
from biscuit_auth import Biscuit, BlockBuilder
from fastmcp import Client

from app.auth.dev_issuer import DevIssuer
from app.delegation.keys import CapabilityRoot
from app.wire.capability_token import Attenuation, attenuate, public_key_from_b64
from tests.delegation.helpers import minted as minted_by
from tests.support.canaries import assert_no_canary
from tests.support.mcp_client import ScriptedUser, mcp_session, text_of
from tests.support.server_process import ServerProcess

ALL_SCOPES = ("mcp:read", "mcp:write", "mcp:delegate")


@pytest.fixture(scope="module")
def delegating_server(baseline_env, tmp_path_factory):
    """A non-TEE server with bearer auth (dev issuer): its capability root is per process, NOT A TEE."""
    state = tmp_path_factory.mktemp("delegation")
    env = {**baseline_env, "MCP_AUTH_ISSUER": "dev", "MCP_DEV_ISSUER_DIR": str(state / "issuer"),
           "MCP_AUDIT_LOG": str(state / "audit.jsonl")}
    process = ServerProcess(env, log_dir=state)
    process.set_env(MCP_AUTH_AUDIENCE=process.url)
    process.start()
    process.issuer = DevIssuer(state / "issuer")
    process.audit_path = state / "audit.jsonl"
    yield process
    process.stop()


def bearer(server, *scopes: str, subject: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {server.issuer.mint(scopes=scopes, audience=server.url, subject=subject)}"}


def presenting(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def mint(server, *scopes: str, **arguments) -> dict:
    async with mcp_session(server.url, headers=bearer(server, *scopes)) as session:
        result = await session.call_tool("mint_capability", arguments)
    assert not result.is_error, text_of(result)
    return result.structured_content


async def narrowed(server, attenuation: Attenuation, **mint_arguments) -> tuple[dict, str]:
    minted = await mint(server, *ALL_SCOPES, **mint_arguments)
    return minted, attenuate(minted["capability"], attenuation, public_key_from_b64(minted["capability_public_key"]))


TRIAGE = Attenuation(tools=frozenset({"query_database", "send_notification"}), tables=frozenset({"issues"}),
                     max_rows=20, channels=frozenset({"general"}), ttl_s=600, context="sub-agent: triage-bot")


class TestMinting:
    async def test_mint_needs_the_delegate_scope(self, delegating_server):
        async with mcp_session(delegating_server.url, headers=bearer(delegating_server, "mcp:read")) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            result = await session.call_tool("mint_capability", {})
        assert "mint_capability" not in tools
        assert result.is_error and "mcp:delegate" in text_of(result)

    async def test_read_only_principal_cannot_mint_write_rights(self, delegating_server):
        minted = await mint(delegating_server, "mcp:read", "mcp:delegate")
        assert "send_notification" not in minted["rights"] and "query_database" in minted["rights"]
        async with mcp_session(delegating_server.url, headers=bearer(delegating_server, "mcp:read", "mcp:delegate")) as s:
            asked = await s.call_tool("mint_capability", {"tools": ["send_notification"]})
        assert asked.is_error and "cannot delegate" in text_of(asked)

    @pytest.mark.parametrize("scopes, arguments", [
        (("mcp:delegate",), {}),  # the delegate scope alone allows no delegable tool
        (ALL_SCOPES, {"tools": []}),  # asking for no tool at all
    ])
    async def test_nothing_to_delegate_is_refused(self, delegating_server, scopes, arguments):
        async with mcp_session(delegating_server.url, headers=bearer(delegating_server, *scopes)) as session:
            result = await session.call_tool("mint_capability", arguments)
        assert result.is_error and "nothing to delegate" in text_of(result)
        assert "biscuit~" not in text_of(result) and "Traceback" not in text_of(result)

    async def test_mint_says_the_root_is_not_a_tee(self, delegating_server):
        minted = await mint(delegating_server, *ALL_SCOPES)
        assert "NOT A TEE" in minted["capability_root_source"]
        health = httpx.get(f"{delegating_server.base_url}/healthz").json()
        assert "NOT A TEE" in health["capability_root_source"]
        assert health["capability_public_key"] == minted["capability_public_key"]
        assert minted["capability"].startswith("biscuit~")
        assert not {"mint_capability", "revoke_capability"} & set(minted["rights"])


class TestPresentation:
    async def test_within_rights(self, delegating_server):
        _, token = await narrowed(delegating_server, TRIAGE)
        async with mcp_session(delegating_server.url, headers=presenting(token)) as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            result = await session.call_tool("query_database", {"sql": "SELECT id FROM issues", "max_rows": 5})
        assert not result.is_error, text_of(result)
        assert not {"mint_capability", "revoke_capability", "provide_session_credentials"} & tools

    async def test_the_tools_digest_is_the_one_of_the_tools_the_sub_agent_sees(self, delegating_server):
        from app.wire.runtime_data import tools_digest

        narrowing = Attenuation(tools=frozenset({"query_database", "attestation_status"}), ttl_s=600)
        _, token = await narrowed(delegating_server, narrowing, tools=["query_database", "attestation_status"])
        # A principal with the scopes a capability carries (its minter's, less mcp:delegate) asks first.
        plain = bearer(delegating_server, "mcp:read", "mcp:write", subject="bob")
        async with mcp_session(delegating_server.url, headers=plain) as session:
            own = (await session.call_tool("attestation_status", {})).structured_content["tools_digest"]
        async with mcp_session(delegating_server.url, headers=presenting(token)) as session:
            visible = (await session.list_tools()).tools
            seen = (await session.call_tool("attestation_status", {})).structured_content["tools_digest"]
        assert {tool.name for tool in visible} == {"query_database", "attestation_status"}
        assert seen == tools_digest(visible) != own, "a sub-agent was given its minter's tool-set digest"

    @pytest.mark.parametrize("tool, arguments, refusal", [
        ("github_search_issues", {"query": "x"}, "block 1"),
        ("query_database", {"sql": "SELECT * FROM incidents"}, "block 1"),
        ("query_database", {"sql": "WITH i AS (SELECT * FROM incidents) SELECT * FROM i"}, "block 1"),
        ("query_database", {"sql": "SELECT * FROM issues WHERE id IN (SELECT id FROM incidents)"}, "block 1"),
        ("query_database", {"sql": "SELECT * FROM issues JOIN incidents USING (id)"}, "block 1"),
        ("query_database", {"sql": "SELECT id FROM issues", "max_rows": 21}, "block 1"),
        ("query_database", {"sql": "SELECT id FROM issues"}, "block 1"),  # the tool's default of 100 rows counts
        ("send_notification", {"message": "hi", "channel": "security"}, "block 1"),
        ("mint_capability", {}, "mcp:delegate"),  # a capability never carries the delegate scope
        ("revoke_capability", {"revocation_id": "00" * 16}, "mcp:delegate"),
    ])
    async def test_outside_rights(self, delegating_server, tool, arguments, refusal):
        _, token = await narrowed(delegating_server, TRIAGE)
        async with mcp_session(delegating_server.url, headers=presenting(token)) as session:
            result = await session.call_tool(tool, arguments)
        assert result.is_error and refusal in text_of(result)

    async def test_a_forged_widening_block_grants_nothing(self, delegating_server):
        minted = await mint(delegating_server, "mcp:read", "mcp:delegate")
        key = public_key_from_b64(minted["capability_public_key"])
        widened = Biscuit.from_base64(minted["capability"].removeprefix("biscuit~"), key).append(
            BlockBuilder('right("send_notification");'))
        async with mcp_session(delegating_server.url, headers=presenting("biscuit~" + widened.to_base64())) as session:
            result = await session.call_tool("send_notification", {"message": "hi"})
        assert result.is_error

    @pytest.mark.parametrize("mangle", [lambda t: t[:-12], lambda t: t[:40] + ("A" if t[40] != "A" else "B") + t[41:]])
    async def test_truncated_or_tampered_token_gets_401(self, delegating_server, mangle):
        _, token = await narrowed(delegating_server, TRIAGE)
        response = httpx.post(delegating_server.url, json={}, headers=presenting(mangle(token)))
        assert response.status_code == 401 and token[10:40] not in response.text

    async def test_token_from_another_root_gets_401(self, delegating_server):
        response = httpx.post(delegating_server.url, json={}, headers=presenting(minted_by(CapabilityRoot.per_process())))
        assert response.status_code == 401 and "capability" in response.json()["error_description"]


class TestConfirmationStillApplies:
    async def test_sub_agent_write_asks_the_user_and_decline_sends_nothing(self, delegating_server, webhook_sink):
        _, token = await narrowed(delegating_server, TRIAGE)
        user = ScriptedUser("decline")
        async with mcp_session(delegating_server.url, headers=presenting(token), user=user) as session:
            result = await session.call_tool("send_notification", {"message": "deploy done", "channel": "general"})
        assert user.prompts and "deploy done" in user.prompts[0]
        assert result.is_error and webhook_sink.posts == [] and webhook_sink.attempts == 0

    async def test_accepted_write_is_sent(self, delegating_server, webhook_sink):
        _, token = await narrowed(delegating_server, TRIAGE)
        async with mcp_session(delegating_server.url, headers=presenting(token), user=ScriptedUser("accept")) as s:
            result = await s.call_tool("send_notification", {"message": "deploy done", "channel": "general"})
        assert not result.is_error and len(webhook_sink.posts) == 1


class TestRevocationAndBudget:
    async def test_revoking_the_root_refuses_every_descendant(self, delegating_server):
        minted, child = await narrowed(delegating_server, TRIAGE)
        grandchild = attenuate(child, Attenuation(max_rows=5), public_key_from_b64(minted["capability_public_key"]))
        async with mcp_session(delegating_server.url, headers=bearer(delegating_server, *ALL_SCOPES)) as owner:
            revoked = await owner.call_tool("revoke_capability", {"revocation_id": minted["revocation_id"]})
        assert not revoked.is_error, text_of(revoked)
        for token in (minted["capability"], child, grandchild):
                assert httpx.post(delegating_server.url, json={}, headers=presenting(token)).status_code == 401

    async def test_another_principal_cannot_revoke(self, delegating_server):
        minted = await mint(delegating_server, *ALL_SCOPES)
        async with mcp_session(delegating_server.url, headers=bearer(delegating_server, *ALL_SCOPES, subject="mallory")) as s:
            result = await s.call_tool("revoke_capability", {"revocation_id": minted["revocation_id"]})
        assert result.is_error and "no capability you minted" in text_of(result)

    async def test_call_budget_is_exact_under_concurrency(self, delegating_server):
        _, token = await narrowed(delegating_server, Attenuation(tools=frozenset({"query_database"}), max_calls=7))
        async with mcp_session(delegating_server.url, headers=presenting(token)) as session:
            results = await asyncio.gather(*(session.call_tool("query_database", {"sql": "SELECT 1", "max_rows": 1})
                                             for _ in range(20)))
        assert sum(not result.is_error for result in results) == 7


class TestSessionlessProtocol:
    async def test_fastmcp_client_on_2026_07_28_is_held_to_the_same_checks(self, delegating_server, webhook_sink):
        """FastMCP's client speaks 2026-07-28 (no session id): same checks, and a write still asks the user."""
        _, token = await narrowed(delegating_server, TRIAGE)
        questions = []

        async def accept(message, response_type, params, context):
            questions.append(message)
            return True

        async with Client(delegating_server.url, auth=token, elicitation_handler=accept) as client:
            within = await client.call_tool("query_database", {"sql": "SELECT id FROM issues", "max_rows": 3})
            outside = await client.call_tool("query_database", {"sql": "SELECT * FROM incidents", "max_rows": 3},
                                             raise_on_error=False)
            write = await client.call_tool("send_notification", {"message": "triaged", "channel": "general"})
        assert not within.is_error and outside.is_error and "block 1" in str(outside.content)
        assert not write.is_error and questions and len(webhook_sink.posts) == 1


class TestAuditAndSecrets:
    async def test_audit_records_the_chain_never_the_token_and_still_verifies(self, delegating_server):
        """Runs last: it stops the server so the audit log is complete and ends with its final checkpoint."""
        minted, token = await narrowed(delegating_server, TRIAGE)
        async with mcp_session(delegating_server.url, headers=presenting(token)) as session:
            await session.call_tool("query_database", {"sql": "SELECT id FROM issues", "max_rows": 1})
            await session.call_tool("query_database", {"sql": "SELECT * FROM incidents", "max_rows": 1})
        delegating_server.stop()
        text = delegating_server.audit_path.read_text()
        records = [json.loads(line) for line in text.splitlines()]
        delegated = [record for record in records
                     if (record.get("delegation") or {}).get("chain", [{}])[0].get("revocation_id") == minted["revocation_id"]]
        assert [record["decision"]["allowed"] for record in delegated] == [True, False]
        chain = delegated[0]["delegation"]
        assert chain["root_principal"] == "alice" and chain["chain"][1]["context"] == "sub-agent: triage-bot"
        mint_records = [record for record in records if record.get("tool") == "mint_capability"]
        assert any(record["summary"]["revocation_id"] == minted["revocation_id"] for record in mint_records)
        everything = text + delegating_server.output()
        for secret in (minted["capability"], token):
            body = secret.removeprefix("biscuit~")
            assert body[:32] not in everything and body[-32:] not in everything
        assert_no_canary([everything], "server output or audit")
        key = records[0]["key"]
        verified = subprocess.run([sys.executable, "-m", "app.cli", "audit", "verify", str(delegating_server.audit_path),
                                   "--public-key", key], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr
