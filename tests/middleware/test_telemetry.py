"""The telemetry layer counts calls, denials (by layer and reason) and quota refusals, with audit-safe attributes."""

from __future__ import annotations

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from app.auth.principal import PrincipalProvider
from app.middleware.quotas import QuotaExceeded
from app.middleware.telemetry import TelemetryMiddleware
from app.telemetry.instruments import Instruments


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict, float]]]:
    found: dict[str, list[tuple[dict, float]]] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = [(dict(point.attributes), getattr(point, "value", getattr(point, "count", None)))
                                      for point in metric.data.data_points]
    return found


@pytest.fixture
def metered():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    mcp = FastMCP("metered", middleware=[TelemetryMiddleware(Instruments(provider.get_meter("t")),
                                                             PrincipalProvider(auth_enabled=False),
                                                             frozenset({"echo", "limited"}))])

    @mcp.tool
    def echo(text: str) -> str:
        return text

    @mcp.tool
    def limited() -> str:
        raise QuotaExceeded("rate limit for 'limited' exceeded", 3)

    yield mcp, reader
    provider.shutdown()


class TestTelemetryMiddleware:
    async def test_calls_denials_and_quota_refusals_are_counted(self, metered):
        mcp, reader = metered
        async with Client(mcp) as client:
            await client.call_tool("echo", {"text": "secret-looking argument"})
            with pytest.raises(ToolError):
                await client.call_tool("limited", {})

        points = _points(reader)
        assert ({"mcp_tee.tool": "echo", "mcp_tee.outcome": "ok"}, 1) in points["mcp_tee.tool.calls"]
        assert ({"mcp_tee.tool": "limited", "mcp_tee.outcome": "denied"}, 1) in points["mcp_tee.tool.calls"]
        assert points["mcp_tee.denials"] == [({"mcp_tee.denial.layer": "quota",
                                               "mcp_tee.denial.reason": "QuotaExceeded"}, 1)]
        assert points["mcp_tee.quota.refusals"] == [({"mcp_tee.tool": "limited"}, 1)]
        assert {attributes["mcp_tee.tool"] for attributes, _ in points["mcp_tee.tool.duration"]} == {"echo", "limited"}
        assert "secret-looking" not in repr(points)

    async def test_an_undeclared_tool_name_gets_no_series_of_its_own(self, metered):
        mcp, reader = metered
        async with Client(mcp) as client:
            with pytest.raises(ToolError):
                await client.call_tool("x" * 100_000, {})
        points = _points(reader)
        assert {attributes["mcp_tee.tool"] for attributes, _ in points["mcp_tee.tool.calls"]} == {"undeclared"}
