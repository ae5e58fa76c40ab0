"""The confirmation gate as a library: fail closed on every path that is not an explicit, timely yes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastmcp import Client, FastMCP
from fastmcp.client.elicitation import ElicitResult

from app.confirmation import ConfirmationRefused, current_confirmation
from app.middleware.confirmation import ConfirmationMiddleware

WRITES: list[str] = []


def server(*, gated: bool, timeout_s: float = 5.0) -> FastMCP:
    middleware = [ConfirmationMiddleware({"write"}, timeout_s=timeout_s)] if gated else []
    mcp = FastMCP("confirm-test", middleware=middleware)

    @mcp.tool
    def write(text: str) -> str:
        confirmed = current_confirmation("write")
        WRITES.append(text)
        return confirmed.request_id

    return mcp


@pytest.fixture(autouse=True)
def _clear():
    WRITES.clear()


class TestFailClosed:
    async def test_a_write_that_bypasses_the_gate_refuses_itself(self):
        """Defense in depth: if the middleware were ever left out, the tool still will not write."""
        async with Client(server(gated=False)) as client:
            result = await client.call_tool("write", {"text": "x"}, raise_on_error=False)
        assert result.is_error and "requires the user's confirmation" in result.content[0].text
        assert WRITES == []

    def test_outside_any_call_there_is_no_confirmation(self):
        with pytest.raises(ConfirmationRefused):
            current_confirmation("write")


ANSWERS: list[str] = []


def answer(action: str, value: bool = True):
    async def user(message, response_type, params, context):
        ANSWERS.append(message)
        return ElicitResult(action=action, content={"value": value} if action == "accept" else None)
    return user


class TestRoundTripConfirmation:
    """fastmcp's in-memory client speaks MCP 2026-07-28: the question travels as an InputRequiredResult."""

    async def test_an_explicit_yes_runs_the_write_once_with_its_own_request_id(self):
        ANSWERS.clear()
        async with Client(server(gated=True), elicitation_handler=answer("accept")) as client:
            first = await client.call_tool("write", {"text": "a"})
            second = await client.call_tool("write", {"text": "b"})
        assert WRITES == ["a", "b"] and first.data != second.data
        assert len(ANSWERS) == 2 and "Allow write to do exactly this?" in ANSWERS[0]

    @pytest.mark.parametrize("action, value, fragment", [("decline", True, "declined"), ("cancel", True, "cancelled"),
                                                         ("accept", False, "answered no")])
    async def test_anything_but_yes_writes_nothing(self, action, value, fragment):
        async with Client(server(gated=True), elicitation_handler=answer(action, value)) as client:
            result = await client.call_tool("write", {"text": "x"}, raise_on_error=False)
        assert result.is_error and fragment in result.content[0].text
        assert WRITES == []


class TestRoundTripStateIsBound:
    """The SDK seals request_state; these feed the unsealed state as the framework hands it over."""

    def leg(self, middleware, state: str, *, action: str = "accept", arguments=None):
        ctx = SimpleNamespace(request_state=state,
                              input_responses={"mcp-tee-confirm": SimpleNamespace(action=action, content={"value": True})})
        return middleware._round_trip_answer(ctx, "write", arguments or {"text": "x"})

    def asked_state(self, middleware) -> str:
        return middleware._round_trip_question("write", {"text": "x"}, "preview").input_required.request_state

    def test_a_confirmation_is_single_use(self):
        middleware = ConfirmationMiddleware({"write"})
        state = self.asked_state(middleware)
        assert self.leg(middleware, state)
        with pytest.raises(ConfirmationRefused, match="already used"):
            self.leg(middleware, state)

    def test_arguments_changed_after_the_user_saw_them_are_refused(self):
        middleware = ConfirmationMiddleware({"write"})
        with pytest.raises(ConfirmationRefused, match="arguments changed"):
            self.leg(middleware, self.asked_state(middleware), arguments={"text": "something else"})

    def test_foreign_state_is_refused(self):
        with pytest.raises(ConfirmationRefused, match="not ours"):
            self.leg(ConfirmationMiddleware({"write"}), "not json")

    def test_state_asked_of_one_principal_is_refused_for_another(self):
        """Issue 13, finding 10 (defense in depth beside the SDK's own binding)."""
        caller = SimpleNamespace(subject="bob")
        middleware = ConfirmationMiddleware({"write"}, principals=lambda: caller)
        state = self.asked_state(middleware)
        caller.subject = "eve"
        with pytest.raises(ConfirmationRefused, match="asked of another caller"):
            self.leg(middleware, state)
