"""Layer-2 session credentials: sealed-only, bound to one MCP session, TTL-limited, never recorded."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.agent import AttestedSession
from app.agent.pinning import ChannelPin
from app.wire.session_seal import SessionKey, seal_to_session
from app.wire.credentials import ALLOWED_CREDENTIAL_KINDS, credential_payload, parse_credential_payload
from tests.agent.conftest import CANARY_USER_TOKEN
from tests.support.canaries import CANARY_GITHUB_TOKEN
from tests.support.mcp_client import mcp_session, text_of

TOOL = "provide_session_credentials"


def sealed_for(session: AttestedSession, document: dict) -> str:
    return seal_to_session(session.report.session_pub, json.dumps(document).encode())


class TestPayloadSchema:
    def test_round_trip(self):
        payload = parse_credential_payload(credential_payload("github_token", CANARY_USER_TOKEN, 60))
        assert (payload.kind, payload.token, payload.ttl_s) == ("github_token", CANARY_USER_TOKEN, 60)
        assert CANARY_USER_TOKEN not in repr(payload)

    def test_ttl_defaults_to_15_minutes_and_is_capped_at_an_hour(self):
        document = {"kind": "github_token", "token": CANARY_USER_TOKEN}
        assert parse_credential_payload(json.dumps(document).encode()).ttl_s == 900
        assert parse_credential_payload(json.dumps({**document, "ttl_s": 10**6}).encode()).ttl_s == 3600

    @pytest.mark.parametrize("document", [
        {"kind": "aws_key", "token": CANARY_USER_TOKEN},
        {"kind": "github_token", "token": CANARY_USER_TOKEN + "\r\nX-Injected: 1"},
        {"kind": "github_token", "token": ""},
        {"kind": "github_token", "token": CANARY_USER_TOKEN, "ttl_s": 0},
        {"kind": "github_token", "token": CANARY_USER_TOKEN, "ttl_s": True},
        {"kind": "github_token", "token": CANARY_USER_TOKEN, "scope": "admin"},
        {"token": CANARY_USER_TOKEN},
        [CANARY_USER_TOKEN],
    ])
    def test_refusals_name_the_field_never_the_value(self, document):
        with pytest.raises(ValueError) as refused:
            parse_credential_payload(json.dumps(document).encode())
        assert CANARY_USER_TOKEN not in str(refused.value)

    def test_allowed_kinds_are_a_named_set(self):
        assert ALLOWED_CREDENTIAL_KINDS == frozenset({"github_token"})


class TestSealedOnly:
    @pytest.mark.parametrize("plaintext", [
        CANARY_USER_TOKEN,
        json.dumps({"kind": "github_token", "token": CANARY_USER_TOKEN}),
        f"Bearer {CANARY_USER_TOKEN}",
    ])
    async def test_plaintext_is_refused_without_echo(self, tee_stack, plaintext):
        async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as session:
            result = await session.call_tool(TOOL, {"sealed": plaintext})
        assert result.is_error and "plaintext credentials are refused" in text_of(result)
        assert CANARY_USER_TOKEN not in text_of(result)

    async def test_sealed_blob_is_accepted(self, tee_stack):
        async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as session:
            accepted = await session.provide_credentials("github_token", CANARY_USER_TOKEN, ttl_s=60)
        assert accepted["kind"] == "github_token" and accepted["ttl_s"] == 60
        assert CANARY_USER_TOKEN not in json.dumps(accepted)

    async def test_unattested_session_is_refused(self, tee_stack):
        blob = seal_to_session(SessionKey.generate().public_b64url, credential_payload("github_token", "ghp_x" * 8))
        async with mcp_session(tee_stack.server.url, pin=ChannelPin()) as raw:
            result = await raw.call_tool(TOOL, {"sealed": blob})
        assert result.is_error and "no attestation yet" in text_of(result)

    async def test_refused_kind_reaches_the_agent_as_credential_refused(self, tee_stack):
        async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as session:
            result = await session.call_tool(TOOL, {"sealed": sealed_for(session, {"kind": "aws", "token": "abcdefgh"})})
        assert result.is_error and "kind must be one of" in text_of(result)


class TestSessionBinding:
    async def test_replay_into_another_session_does_not_open(self, tee_stack):
        async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as first:
            blob = sealed_for(first, {"kind": "github_token", "token": CANARY_USER_TOKEN})
            assert not (await first.call_tool(TOOL, {"sealed": blob})).is_error
            async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as second:
                replayed = await second.call_tool(TOOL, {"sealed": blob})
                status = (await second.call_tool("attestation_status", {})).structured_content
        assert replayed.is_error and "does not open with this session's key" in text_of(replayed)
        assert status["session_credentials"] == []

    async def test_user_token_serves_only_its_own_session(self, tee_stack, github_standin):
        async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as user:
            await user.provide_credentials("github_token", CANARY_USER_TOKEN)
            found = await user.call_tool("github_search_issues", {"query": "login"})
            assert not found.is_error and github_standin.requests[-1]["token"] == CANARY_USER_TOKEN
            status = (await user.call_tool("attestation_status", {})).structured_content
            async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as other:
                await other.call_tool("github_search_issues", {"query": "login"})
        assert github_standin.requests[-1]["token"] == CANARY_GITHUB_TOKEN
        assert [c["kind"] for c in status["session_credentials"]] == ["github_token"]
        assert 0 < status["session_credentials"][0]["expires_in_s"] <= 900
        assert CANARY_USER_TOKEN not in json.dumps(status)


class TestTtl:
    async def test_credential_is_unusable_after_its_ttl(self, tee_stack, github_standin):
        async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as session:
            await session.provide_credentials("github_token", CANARY_USER_TOKEN, ttl_s=1)
            await session.call_tool("github_search_issues", {"query": "login"})
            assert github_standin.requests[-1]["token"] == CANARY_USER_TOKEN
            await asyncio.sleep(1.5)
            await session.call_tool("github_search_issues", {"query": "login"})
            status = (await session.call_tool("attestation_status", {})).structured_content
        assert github_standin.requests[-1]["token"] == CANARY_GITHUB_TOKEN
        assert status["session_credentials"] == []


class TestNeverRecorded:
    async def test_user_token_appears_in_no_log_audit_line_or_error(self, tee_stack):
        errors = []
        async with AttestedSession(tee_stack.server.url, trust=tee_stack.trust) as session:
            await session.provide_credentials("github_token", CANARY_USER_TOKEN)
            errors.append(text_of(await session.call_tool(TOOL, {"sealed": CANARY_USER_TOKEN})))
            await session.call_tool("github_search_issues", {"query": f"leak {CANARY_USER_TOKEN}"})
            bad_ttl = sealed_for(session, {"kind": "github_token", "token": CANARY_USER_TOKEN, "ttl_s": -1})
            errors.append(text_of(await session.call_tool(TOOL, {"sealed": bad_ttl})))
        audit = tee_stack.audit_path.read_text()
        assert any(json.loads(line).get("tool") == TOOL for line in audit.splitlines())
        for where, text in [("server log", tee_stack.server.output()), ("audit log", audit), *(("error", e) for e in errors)]:
            assert CANARY_USER_TOKEN not in text, f"user token leaked into the {where}"
