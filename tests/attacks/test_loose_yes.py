"""Issue 13, finding 9: only a JSON `true` in the exact schema field is consent, on both protocol eras."""

from __future__ import annotations

import mcp_types as types
import pytest

from tests.support.authed import authed_stack
from tests.support.mcp_client import mcp_session, text_of
from tests.support.stack import policy_with

ARGS = {"message": "deploy 42 finished"}
# Answers pydantic's lax mode turns into True (or that carry more than the schema asked for).
NEAR_MISSES = {
    "string-yes": {"value": "yes"},
    "string-on": {"value": "on"},
    "string-true": {"value": "true"},
    "string-True": {"value": "True"},
    "int-1": {"value": 1},
    "float-1.0": {"value": 1.0},
    "extra-field": {"value": True, "note": "and also"},
    "renamed-field": {"Value": True},
    "empty": {},
    "null": {"value": None},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    roomy = policy_with({"tools": {"send_notification": {"quota": {"per_principal_per_minute": 10_000, "burst": 1000}}},
                         "sessions": {"opens_per_principal_per_minute": 10_000, "burst": 1000}})
    with authed_stack(tmp_path_factory.mktemp("loose-yes"), policy=roomy) as running:
        yield running


def answering(content):
    async def user(context, params):
        return types.ElicitResult(action="accept", content=content)
    return user


class TestOnlyAJsonTrueIsConsent:
    @pytest.mark.parametrize("content", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
    async def test_legacy_elicitation_near_miss_sends_nothing(self, server, content):
        async with mcp_session(server.url, user=answering(content), headers=server.headers("alice")) as session:
            result = await session.call_tool("send_notification", ARGS)
        assert result.is_error and "the user answered no" in text_of(result), text_of(result)

    @pytest.mark.parametrize("content", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
    def test_round_trip_near_miss_sends_nothing(self, server, content):
        asked = server.modern_call("alice", "send_notification", ARGS)["result"]
        answer = server.modern_call("alice", "send_notification", ARGS, request_state=asked["requestState"],
                                    responses={"mcp-tee-confirm": {"action": "accept", "content": content}})
        assert answer["result"]["isError"] and "the user answered no" in answer["result"]["content"][0]["text"], answer

    async def test_a_json_true_is_consent_on_both_eras(self, server):
        async with mcp_session(server.url, user=answering({"value": True}), headers=server.headers("alice")) as session:
            legacy = await session.call_tool("send_notification", ARGS)
        asked = server.modern_call("alice", "send_notification", ARGS)["result"]
        modern = server.modern_call("alice", "send_notification", ARGS, request_state=asked["requestState"],
                                    responses={"mcp-tee-confirm": {"action": "accept", "content": {"value": True}}})
        assert not legacy.is_error, text_of(legacy)
        assert modern["result"]["isError"] is False
