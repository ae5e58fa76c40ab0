"""Issue 13, finding 10: sealed confirmation state is bound to the verified principal."""

from __future__ import annotations

from tests.support.authed import authed_stack

ARGS = {"message": "deploy 42 finished"}
YES = {"mcp-tee-confirm": {"action": "accept", "content": {"value": True}}}


class TestConfirmationStateBoundToPrincipal:
    def test_eve_presenting_bobs_request_state_is_refused(self, tmp_path):
        with authed_stack(tmp_path) as server:
            asked = server.modern_call("bob", "send_notification", ARGS)["result"]
            assert asked["resultType"] == "input_required"
            stolen = server.modern_call("eve", "send_notification", ARGS,
                                        request_state=asked["requestState"], responses=YES)
            assert "error" in stolen or stolen["result"].get("isError"), stolen
            own = server.modern_call("bob", "send_notification", ARGS,
                                     request_state=asked["requestState"], responses=YES)
        assert own["result"]["isError"] is False and own["result"]["structuredContent"] == {"result": "sent"}
        assert [call["principal"] for call in server.stack.calls() if call["outcome"]["status"] == "ok"] == ["bob"]
