"""Telemetry from a real server process: spans and metrics reach a loopback OTLP receiver, redacted, and the
server's spans join the client's trace through `_meta` (2026-07-28) and through the HTTP header (2025-11-25)."""

from __future__ import annotations

import secrets

import pytest
from fastmcp import Client
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tests.support.canaries import ALL_CANARIES
from tests.support.mcp_client import ScriptedUser, mcp_session, text_of
from tests.support.otlp_receiver import attribute_map
from tests.support.server_process import ServerProcess

OTLP_API_KEY = "OtlpApiKeyCanary-5d1c"
LITERAL = f"SqlLiteralCanary-{secrets.token_hex(4)}"
RAW_SQL = f"SELECT id, title FROM issues WHERE title = '{LITERAL}'"


@pytest.fixture(scope="module")
def telemetry_server(baseline_env, otlp, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("telemetry-server")
    process = ServerProcess({**baseline_env, "MCP_AUDIT_LOG": str(log_dir / "audit.jsonl"),
                             "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
                             "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={OTLP_API_KEY}",
                             "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "300"},
                            log_dir=log_dir)
    process.start()
    yield process
    process.stop()


def _trace_of(receiver, trace_id: bytes, name: str):
    """The spans of one trace with one name, once they have arrived."""
    return receiver.wait_for(lambda: [span for span in receiver.spans()
                                      if span.trace_id == trace_id and span.name == name])


def _by_outcome(receiver, trace_id: bytes, name: str) -> dict:
    """`{outcome: span}` once spans with both outcomes `ok` and `denied` have arrived, else {}."""
    spans = {attribute_map(span.attributes).get("mcp_tee.outcome"): span for span in receiver.spans()
             if span.trace_id == trace_id and span.name == name}
    return spans if {"ok", "denied"} <= spans.keys() else {}


def _client_span() -> tuple[SpanContext, object]:
    """A client-side span context, attached as current, without an SDK in the test process."""
    span_context = SpanContext(trace_id=int.from_bytes(secrets.token_bytes(16), "big"),
                               span_id=int.from_bytes(secrets.token_bytes(8), "big"), is_remote=False,
                               trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return span_context, context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))


class TestSpansAndMetrics:
    async def test_calls_are_traced_and_counted_with_audit_safe_attributes_only(self, telemetry_server, otlp):
        otlp.reset()
        headers = {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
        trace_id = bytes.fromhex(headers["traceparent"].split("-")[1])
        async with mcp_session(telemetry_server.url, headers=headers) as session:
            result = await session.call_tool("query_database", {"sql": RAW_SQL})
            assert not result.is_error, text_of(result)
            refused = await session.call_tool("send_notification", {"message": f"hello {LITERAL}"})
            assert refused.is_error  # no elicitation support: the confirmation layer refuses
            found = await session.call_tool("github_search_issues", {"query": LITERAL, "repo": "acme/api"})
            assert not found.is_error, text_of(found)
        async with mcp_session(telemetry_server.url, headers=headers, user=ScriptedUser("accept")) as session:
            sent = await session.call_tool("send_notification", {"message": f"hello {LITERAL}"})
            assert not sent.is_error, text_of(sent)

        (call,) = _trace_of(otlp, trace_id, "tools/call query_database")
        attributes = attribute_map(call.attributes)
        assert attributes["mcp_tee.tool"] == "query_database" and attributes["mcp_tee.outcome"] == "ok"
        assert attributes["mcp_tee.principal"] == "local-dev"
        assert len(attributes["mcp_tee.sql.fingerprint"]) == 16
        (database,) = _trace_of(otlp, trace_id, "postgres query")
        assert attribute_map(database.attributes)["mcp_tee.upstream"] == "postgres"
        by_outcome = otlp.wait_for(lambda: _by_outcome(otlp, trace_id, "tools/call send_notification"))
        assert attribute_map(by_outcome["denied"].attributes)["mcp_tee.denial.layer"] == "confirmation"
        sent = by_outcome["ok"]
        (prompt,) = _trace_of(otlp, trace_id, "confirmation wait")  # only the client that can answer is asked
        assert prompt.parent_span_id == sent.span_id
        for upstream_call in ("github search_issues", "webhook post"):
            (span,) = _trace_of(otlp, trace_id, upstream_call)
            assert attribute_map(span.attributes)["mcp_tee.upstream"] == upstream_call.split()[0]
        assert database.parent_span_id == call.span_id

        def counted():
            return [attribute_map(point.attributes) for point in otlp.data_points("mcp_tee.tool.calls")]
        assert {"mcp_tee.tool": "query_database", "mcp_tee.outcome": "ok"} in otlp.wait_for(counted)
        otlp.wait_for(lambda: {"mcp_tee.denials", "mcp_tee.tool.duration", "mcp_tee.upstream.duration",
                               "mcp_tee.breaker.state", "mcp_tee.db.pool.connections"} <= otlp.metric_names())

        exported = b"".join(otlp.raw)
        for needle in (*ALL_CANARIES, OTLP_API_KEY, LITERAL, RAW_SQL):
            assert needle.encode() not in exported, f"{needle[:8]}… reached the collector"


class TestTraceJoining:
    async def test_server_spans_join_the_trace_named_in_meta(self, telemetry_server, otlp):
        span_context, token = _client_span()
        try:
            async with Client(telemetry_server.url) as client:  # 2026-07-28: traceparent travels in _meta
                await client.call_tool("attestation_status", {})
        finally:
            context.detach(token)
        (server_span,) = _trace_of(otlp, span_context.trace_id.to_bytes(16, "big"), "tools/call attestation_status")
        assert server_span.parent_span_id == span_context.span_id.to_bytes(8, "big")

    async def test_server_spans_join_the_trace_named_in_the_http_header(self, telemetry_server, otlp):
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        async with mcp_session(telemetry_server.url, headers={"traceparent": f"00-{trace_id}-{parent}-01"}) as session:
            await session.call_tool("attestation_status", {})
        (server_span,) = _trace_of(otlp, bytes.fromhex(trace_id), "tools/call attestation_status")
        assert server_span.parent_span_id == bytes.fromhex(parent)
