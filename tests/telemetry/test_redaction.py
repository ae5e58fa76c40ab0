"""Redaction on the telemetry path: only allow-listed, scrubbed attributes reach the collector's protobufs."""

from __future__ import annotations

import pytest

from app.audit.redaction import Redactor
from app.telemetry.redaction import ALLOWED_ATTRIBUTES
from app.telemetry.setup import TelemetryHandle, build_providers, plan_telemetry
from tests.support.canaries import ALL_CANARIES, CANARY_DB_PASSWORD, CANARY_GITHUB_TOKEN, assert_no_canary
from tests.support.otlp_receiver import attribute_map

RAW_SQL = "SELECT secret_column FROM payroll WHERE id = 42"


@pytest.fixture
def providers(receiver, monkeypatch) -> TelemetryHandle:
    """The server's own provider setup, exporting to the loopback receiver (not installed globally)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    handle = build_providers(plan_telemetry({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}), Redactor(ALL_CANARIES))
    yield handle
    handle.shutdown()


class TestSpans:
    def test_only_allow_listed_attributes_leave_and_values_are_scrubbed(self, receiver, providers):
        provider = providers.tracer_provider
        with provider.get_tracer("t").start_as_current_span("tools/call query_database") as span:
            span.set_attributes({
                "mcp_tee.tool": "query_database",
                "mcp_tee.sql.fingerprint": "a1b2c3",
                "mcp_tee.principal": f"alice {CANARY_DB_PASSWORD}",  # allowed key, secret value
                "mcp.session.id": "session-handle",  # a handle, not on the list
                "db.statement": RAW_SQL,
                "tool.arguments": f'{{"token": "{CANARY_GITHUB_TOKEN}"}}',
            })
        provider.force_flush()

        (received,) = receiver.spans()
        attributes = attribute_map(received.attributes)
        assert attributes["mcp_tee.tool"] == "query_database"
        assert attributes["mcp_tee.sql.fingerprint"] == "a1b2c3"
        assert attributes["mcp_tee.principal"] == "alice [REDACTED]"
        assert set(attributes) <= ALLOWED_ATTRIBUTES
        assert_no_canary([raw.decode("latin-1") for raw in receiver.raw], "exported spans")
        assert not any(RAW_SQL.encode() in raw or b"session-handle" in raw for raw in receiver.raw)

    def test_exception_messages_and_stack_traces_do_not_leave(self, receiver, providers):
        provider = providers.tracer_provider
        try:
            with provider.get_tracer("t").start_as_current_span(f"call {CANARY_GITHUB_TOKEN}"):
                raise RuntimeError(f"connect failed: postgresql://reader:{CANARY_DB_PASSWORD}@db/x")
        except RuntimeError:
            pass
        provider.force_flush()

        (received,) = receiver.spans()
        (event,) = received.events
        assert event.name == "exception"
        assert attribute_map(event.attributes) == {"exception.type": "RuntimeError"}
        assert CANARY_GITHUB_TOKEN not in received.name
        assert_no_canary([raw.decode("latin-1") for raw in receiver.raw], "exported exception events")


class TestMetrics:
    def test_the_view_drops_attributes_off_the_list(self, receiver, providers):
        counter = providers.meter_provider.get_meter("t").create_counter("mcp_tee.tool.calls")
        counter.add(1, {"mcp_tee.tool": "list_issues", "db.statement": RAW_SQL, "token": CANARY_GITHUB_TOKEN})
        providers.meter_provider.force_flush()

        (point,) = receiver.data_points("mcp_tee.tool.calls")
        assert attribute_map(point.attributes) == {"mcp_tee.tool": "list_issues"}
        assert_no_canary([raw.decode("latin-1") for raw in receiver.raw], "exported metrics")
