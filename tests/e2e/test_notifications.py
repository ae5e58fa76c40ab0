"""`send_notification` end to end: the user's explicit accept is the only way a post happens."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.mcp_client import ScriptedUser, mcp_session, text_of
from tests.support.server_process import ServerProcess

ARGS = {"message": "deploy 42 finished", "channel": "ops", "urgency": "high"}


async def notify(url: str, user: ScriptedUser | None, arguments: dict = ARGS):
    async with mcp_session(url, user=user) as session:
        return await session.call_tool("send_notification", arguments)


class TestConfirmationGate:
    async def test_accept_posts_exactly_once_what_the_user_saw(self, server, webhook_sink):
        user = ScriptedUser("accept")
        result = await notify(server.url, user)
        assert not result.is_error, text_of(result)
        assert len(webhook_sink.posts) == 1
        post = webhook_sink.posts[0]
        assert post["payload"] == {"channel": "ops", "urgency": "high", "text": "[high] deploy 42 finished"}
        assert post["idempotency_key"] == result.structured_content["idempotency_key"]
        assert "[high] deploy 42 finished" in user.prompts[0] and "#ops" in user.prompts[0]

    @pytest.mark.parametrize(
        "user, fragment",
        [
            (ScriptedUser("decline"), "declined"),
            (ScriptedUser("cancel"), "cancelled"),
            (ScriptedUser("accept", value=False), "answered no"),
            (None, "cannot show confirmation prompts"),
        ],
        ids=["decline", "cancel", "accept-but-no", "client-without-elicitation"],
    )
    async def test_anything_but_an_explicit_yes_sends_nothing(self, server, webhook_sink, user, fragment):
        result = await notify(server.url, user)
        assert result.is_error and fragment in text_of(result) and "not done" in text_of(result)
        assert webhook_sink.posts == [] and webhook_sink.attempts == 0

    @pytest.mark.parametrize(
        "arguments, fragment",
        [
            ({**ARGS, "urgency": "panic"}, "urgency"),
            ({**ARGS, "urgency": ["high"]}, "urgency"),  # unhashable: found by the fuzz suite
            ({**ARGS, "message": "x" * 2001}, "message"),
            ({**ARGS, "channel": "#Bad Channel"}, "channel"),
            ({"channel": "ops"}, "message"),
        ],
    )
    async def test_invalid_input_is_refused_before_the_user_is_asked(self, server, webhook_sink, arguments, fragment):
        user = ScriptedUser("accept")
        result = await notify(server.url, user, arguments)
        assert result.is_error and fragment in text_of(result)
        assert user.prompts == [] and webhook_sink.posts == []


class SlowUser(ScriptedUser):
    """Looks at the prompt and never answers in time."""

    async def __call__(self, context, params):
        self.prompts.append(params.message)
        await asyncio.sleep(5)
        return await super().__call__(context, params)


class TestConfirmationTimeout:
    async def test_no_answer_in_time_means_not_sent(self, baseline_env, webhook_sink, tmp_path):
        server = ServerProcess({**baseline_env, "MCP_CONFIRMATION_TIMEOUT_S": "0.5"}, log_dir=tmp_path).start()
        try:
            user = SlowUser("accept")
            result = await notify(server.url, user)
        finally:
            server.stop()
        assert result.is_error and "no answer within 0.5 s" in text_of(result)
        assert len(user.prompts) == 1 and webhook_sink.posts == [] and webhook_sink.attempts == 0


class TestDeliveryFailures:
    @pytest.mark.parametrize("fault, fragment", [("500", "failed (500)"), ("hang", "did not answer"),
                                                 ("redirect", "redirect"), ("close", "may have been delivered")])
    async def test_webhook_failures_are_clear_errors(self, server, webhook_sink, fault, fragment):
        webhook_sink.fault = fault
        result = await notify(server.url, ScriptedUser("accept"))
        assert result.is_error and fragment in text_of(result)
        assert server.alive()

    async def test_timeout_after_receipt_never_posts_twice(self, server, webhook_sink):
        webhook_sink.fault = "timeout-after-receive"
        result = await notify(server.url, ScriptedUser("accept"))
        assert result.is_error and "may have been delivered" in text_of(result)
        assert webhook_sink.attempts == 1, "a request that may have arrived is never sent again"
        assert len(webhook_sink.posts) == 1
