"""Sampling stays off: no server code asks the client's LLM for output, so none can trigger a write."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).parents[2] / "app"
# Context methods that request a completion from the client's model.
SAMPLING_CALLS = frozenset({"sample", "sample_step", "create_message"})


def _sampling_calls(source: str) -> list[str]:
    return [node.func.attr for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SAMPLING_CALLS]


class TestSamplingOff:
    def test_no_module_under_app_requests_sampling(self):
        offenders = {str(path.relative_to(APP)): calls for path in APP.rglob("*.py")
                     if (calls := _sampling_calls(path.read_text(encoding="utf-8")))}
        assert offenders == {}

    def test_the_scan_would_catch_a_sampling_call(self):
        assert _sampling_calls("async def tool(ctx):\n    text = await ctx.sample('write a message')\n") == ["sample"]
