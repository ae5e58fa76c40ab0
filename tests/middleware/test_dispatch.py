"""TypedMiddleware runs exactly the hooks a layer overrides, and falls back to FastMCP's dispatch for generic ones."""

from __future__ import annotations

from fastmcp import Client, FastMCP

import pytest

from app.middleware.dispatch import LayerPipeline, TypedMiddleware


class Recorder(TypedMiddleware):
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_call_tool(self, context, call_next):
        self.seen.append(f"call {context.message.name}")
        return await call_next(context)

    async def on_list_tools(self, context, call_next):
        self.seen.append("list")
        return [tool for tool in await call_next(context) if tool.name != "hidden"]


class GenericRecorder(Recorder):
    async def on_request(self, context, call_next):
        self.seen.append(f"request {context.method}")
        return await call_next(context)


def server(*middleware) -> FastMCP:
    mcp = FastMCP("dispatch", middleware=list(middleware))

    @mcp.tool
    def shown(text: str) -> str:
        return text

    @mcp.tool
    def hidden() -> str:
        return "x"

    return mcp


class TestTypedHooks:
    async def test_each_overridden_hook_runs_once_per_message_and_can_change_the_answer(self):
        recorder = Recorder()
        async with Client(server(recorder)) as client:
            names = {tool.name for tool in await client.list_tools()}
            result = await client.call_tool("shown", {"text": "hi"})
        assert names == {"shown"} and result.data == "hi"
        assert recorder.seen == ["list", "call shown"]

    async def test_layers_run_in_order_outermost_first(self):
        order: list[str] = []

        class Named(TypedMiddleware):
            def __init__(self, name: str) -> None:
                self.name = name

            async def on_call_tool(self, context, call_next):
                order.append(self.name)
                return await call_next(context)

        async with Client(server(Named("outer"), Named("inner"))) as client:
            await client.call_tool("shown", {"text": "hi"})
        assert order == ["outer", "inner"]


class TestGenericHooksAreNeverSkipped:
    async def test_a_layer_with_on_request_keeps_fastmcps_full_dispatch(self):
        recorder = GenericRecorder()
        async with Client(server(recorder)) as client:
            await client.call_tool("shown", {"text": "hi"})
        assert "request tools/call" in recorder.seen and "call shown" in recorder.seen


class Named(TypedMiddleware):
    def __init__(self, name: str, order: list[str]) -> None:
        self.name = name
        self.order = order

    async def on_call_tool(self, context, call_next):
        self.order.append(self.name)
        return await call_next(context)


class TestLayerPipeline:
    async def test_the_layers_run_as_one_middleware_in_order_each_hook_once(self):
        order: list[str] = []
        recorder = Recorder()
        pipeline = LayerPipeline([Named("outer", order), recorder, Named("inner", order)])
        async with Client(server(pipeline)) as client:
            names = {tool.name for tool in await client.list_tools()}
            result = await client.call_tool("shown", {"text": "hi"})
        assert names == {"shown"} and result.data == "hi"
        assert order == ["outer", "inner"] and recorder.seen == ["list", "call shown"]

    def test_a_layer_with_a_generic_hook_is_refused_rather_than_skipped(self):
        with pytest.raises(TypeError, match="GenericRecorder"):
            LayerPipeline([Recorder(), GenericRecorder()])
