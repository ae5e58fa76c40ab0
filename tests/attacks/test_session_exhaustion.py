"""Issue 13, finding 3: one token cannot open sessions without bound and lock other clients out."""

from __future__ import annotations

import httpx

from app.server.session_admission import SESSION_IDLE_TIMEOUT_S
from tests.support.authed import authed_stack

CAP = 32  # the packaged policy's max_open_per_principal
OPEN_INTERVAL_S = 2.0  # 30 opens a minute refill one token every 2 s (on the fake clock)


def open_one(server, client: httpx.Client, subject: str) -> httpx.Response:
    server.stack.clock.advance(OPEN_INTERVAL_S)
    return server.initialize(client, subject)


class TestSessionExhaustion:
    def test_a_principal_is_capped_and_others_still_get_in(self, tmp_path):
        with authed_stack(tmp_path) as server, httpx.Client(timeout=10) as client:
            opened = [open_one(server, client, "eve") for _ in range(CAP)]
            assert all(response.status_code == 200 for response in opened)
            refused = open_one(server, client, "eve")
            assert refused.status_code == 429 and refused.headers["retry-after"]
            message = refused.json()["error"]["message"]
            assert f"already holds {CAP} open MCP sessions" in message and "DELETE" in message
            assert open_one(server, client, "bob").status_code == 200, "the agent's principal is unaffected"
            ended = client.delete(server.url, headers={**server.headers("eve"),
                                                       "Mcp-Session-Id": opened[0].headers["mcp-session-id"]})
            assert ended.status_code == 200
            assert open_one(server, client, "eve").status_code == 200, "ending a session frees its place"
            server.stack.clock.advance(SESSION_IDLE_TIMEOUT_S + 1)
            assert open_one(server, client, "eve").status_code == 200, "idle sessions stop counting"
        refusals = [r for r in server.stack.records() if r["type"] == "http" and r["decision"]["layer"] == "sessions"]
        assert [r["principal"] for r in refusals] == ["eve"]

    def test_initialize_is_rate_limited_per_principal(self, tmp_path):
        with authed_stack(tmp_path) as server, httpx.Client(timeout=10) as client:
            answers = [server.initialize(client, "eve").status_code for _ in range(12)]
            other = server.initialize(client, "bob").status_code
        assert answers[:10] == [200] * 10 and answers[10:] == [429, 429]
        assert other == 200

    def test_another_principals_session_id_is_refused_and_the_owner_keeps_it(self, tmp_path):
        with authed_stack(tmp_path) as server, httpx.Client(timeout=10) as client:
            alice = server.open_session(client, "alice")
            held = server.stack.admission.open_sessions("alice")
            stolen = {**server.headers("mallory"), "Mcp-Session-Id": alice["Mcp-Session-Id"],
                      "MCP-Protocol-Version": alice["MCP-Protocol-Version"]}
            ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
            assert client.post(server.url, json=ping, headers=stolen).status_code == 404
            assert client.delete(server.url, headers=stolen).status_code == 404, "a stranger cannot end it"
            assert server.stack.admission.open_sessions("alice") == held == 1
            assert server.stack.admission.open_sessions("mallory") == 0
            answer = server.legacy_call(client, alice, "attestation_status", {})
        assert not answer["result"].get("isError") and answer["result"]["structuredContent"]["mode"] == "env", answer
