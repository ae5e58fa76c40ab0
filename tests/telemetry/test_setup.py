"""Which `OTEL_*` settings turn telemetry on, and which ones the server refuses."""

from __future__ import annotations

import pytest

from app.audit.redaction import Redactor
from app.telemetry.setup import TelemetryConfigError, TelemetryPlan, header_secrets, plan_telemetry

ENDPOINT = "https://collector.example.net:4318"


class TestOffUnlessConfigured:
    def test_nothing_set_means_off(self):
        assert plan_telemetry({}) == TelemetryPlan(False, False)

    def test_an_endpoint_turns_on_both_signals(self):
        assert plan_telemetry({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}) == TelemetryPlan(True, True)

    def test_a_signal_endpoint_turns_on_that_signal(self):
        assert plan_telemetry({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT}) == TelemetryPlan(True, False)

    def test_an_exporter_name_alone_turns_it_on(self):
        assert plan_telemetry({"OTEL_METRICS_EXPORTER": "otlp"}) == TelemetryPlan(False, True)

    @pytest.mark.parametrize("env", [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
    ])
    def test_explicitly_off(self, env):
        assert not plan_telemetry(env).enabled


class TestRefused:
    @pytest.mark.parametrize("env, variable", [
        ({"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER"),  # stdout is the host's to read
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example.net:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://127.0.0.1/x"}, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
    ])
    def test_unsafe_or_unsupported_settings_are_named(self, env, variable):
        with pytest.raises(TelemetryConfigError, match=variable):
            plan_telemetry(env)

    def test_plain_http_is_fine_on_loopback(self):
        assert plan_telemetry({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}).enabled


class TestHeaderValuesAreSecrets:
    def test_every_header_value_is_redacted(self):
        env = {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=k3y-canary-123,x-tenant=tenant%20one",
               "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Basic%20c2VjcmV0OnBhc3N3b3Jk"}
        redactor = Redactor(header_secrets(env))
        text = redactor.redact_text("k3y-canary-123 tenant one Basic c2VjcmV0OnBhc3N3b3Jk")
        assert "k3y-canary-123" not in text and "tenant one" not in text and "c2VjcmV0" not in text


class TestOffCostsNothing:
    def test_with_telemetry_off_fastmcps_own_spans_are_off_too(self, monkeypatch):
        import fastmcp

        from app.telemetry.setup import configure_telemetry

        monkeypatch.setattr(fastmcp.settings, "telemetry_mode", "native")
        assert configure_telemetry(TelemetryPlan(False, False), Redactor(), env={}) is None
        assert fastmcp.settings.telemetry_mode == "off"

    def test_with_telemetry_off_the_chain_has_no_telemetry_layer(self, tmp_path):
        from app.middleware.telemetry import TelemetryMiddleware
        from tests.support.stack import Stack

        stack = Stack(tmp_path)
        layers = [layer for pipeline in stack.server.middleware for layer in getattr(pipeline, "layers", ())]
        assert layers and not any(isinstance(layer, TelemetryMiddleware) for layer in layers)

    async def test_with_telemetry_off_an_upstream_call_opens_no_span(self, monkeypatch):
        from opentelemetry import trace

        from app.telemetry import instruments
        from app.telemetry.setup import configure_telemetry

        @instruments.traced_upstream("postgres", "query")
        async def query() -> str:
            return "rows"

        def no_tracer(*args, **kwargs):
            raise AssertionError("a span was opened with telemetry off")

        configure_telemetry(TelemetryPlan(False, False), Redactor(), env={})
        monkeypatch.setattr(trace, "get_tracer", no_tracer)
        assert await query() == "rows"
        with instruments.layer_span("confirmation wait", {}):
            pass
        instruments.record_telemetry(True)  # as configure_telemetry does with an exporter
        try:
            with pytest.raises(AssertionError, match="span was opened"):
                await query()
        finally:
            instruments.record_telemetry(False)
