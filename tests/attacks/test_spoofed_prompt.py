"""Issue 13, finding 6: a confirmation prompt cannot be disguised with terminal or bidi controls."""

from __future__ import annotations

import pytest

from tests.support.mcp_client import ScriptedUser, mcp_session, text_of

SPOOFS = {
    "cr-and-ansi-line-erase": "EVIL\r\x1b[2K[normal] Weekly sync moved to 3pm",
    "c1-csi": "EVIL\x9b2K Weekly sync moved to 3pm",
    "backspaces": "rm -rf /\x08\x08\x08\x08\x08\x08\x08\x08Weekly sync",
    "bidi-override": "Weekly sync \u202egnp.exe",
    "bidi-isolate": "Weekly sync \u2066hidden\u2069",
    "nul": "visible\x00hidden",
    "delete": "visible\x7f",
}


class TestSpoofedPromptIsRefused:
    @pytest.mark.parametrize("message", list(SPOOFS.values()), ids=list(SPOOFS))
    async def test_disguised_message_is_refused_before_the_user_is_asked(self, server, webhook_sink, message):
        user = ScriptedUser("accept")
        async with mcp_session(server.url, user=user) as session:
            result = await session.call_tool("send_notification", {"message": message, "channel": "ops"})
        assert result.is_error and "control or bidi character" in text_of(result), text_of(result)
        assert user.prompts == [] and webhook_sink.posts == [] and webhook_sink.attempts == 0

    async def test_newlines_and_tabs_still_reach_the_prompt_exactly_as_posted(self, server, webhook_sink):
        user = ScriptedUser("accept")
        message = "line one\n\tline two"
        async with mcp_session(server.url, user=user) as session:
            result = await session.call_tool("send_notification", {"message": message, "channel": "ops"})
        assert not result.is_error, text_of(result)
        assert webhook_sink.posts[0]["payload"]["text"] in user.prompts[0]
