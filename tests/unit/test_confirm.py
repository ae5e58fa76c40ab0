"""The confirmation gate as a library: fail closed on every path that is not an explicit, timely yes."""

from __future__ import annotations

import pytest
from fastmcp import Client, FastMCP
from fastmcp.client.elicitation import ElicitResult

from app.capabilities.confirm import ConfirmationMiddleware, ConfirmationRefused, current_confirmation

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
    async def test_a_connection_without_server_initiated_elicitation_means_not_done(self):
        """fastmcp's in-memory client speaks 2026-07-28, where server-initiated elicitation is unavailable."""
        async def yes(message, response_type, params, context):
            return ElicitResult(action="accept", content={"value": True})

        async with Client(server(gated=True), elicitation_handler=yes) as client:
            result = await client.call_tool("write", {"text": "x"}, raise_on_error=False)
        assert result.is_error and "does not support confirmation prompts" in result.content[0].text
        assert WRITES == []

    async def test_a_write_that_bypasses_the_gate_refuses_itself(self):
        """Defense in depth: if the middleware were ever left out, the tool still will not write."""
        async with Client(server(gated=False)) as client:
            result = await client.call_tool("write", {"text": "x"}, raise_on_error=False)
        assert result.is_error and "requires the user's confirmation" in result.content[0].text
        assert WRITES == []

    def test_outside_any_call_there_is_no_confirmation(self):
        with pytest.raises(ConfirmationRefused):
            current_confirmation("write")
