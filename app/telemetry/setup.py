"""Turn OpenTelemetry on from the standard `OTEL_*` variables: OTLP/HTTP traces and metrics, or nothing.

Threat model: telemetry leaves the TEE. It is off unless an operator configures an exporter; only
OTLP over HTTP(S) is supported (no console exporter: stdout is the host's to read), and the endpoint
must be https unless it is on this machine (a collector in the same container group). Values of
`OTEL_EXPORTER_OTLP_*HEADERS` are usually API keys, so they join the redactor's secret set. Every
span passes the `RedactingSpanProcessor`, and a view restricts every metric's attributes to the
same allow-list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import fastmcp
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from app.audit.redaction import Redactor
from app.telemetry.instruments import record_telemetry
from app.telemetry.redaction import ALLOWED_ATTRIBUTES, RedactingSpanProcessor
from app.urls import UntrustedUrl, require_https_or_loopback

DEFAULT_SERVICE_NAME = "mcp-tee"
OTLP = "otlp"
NONE = "none"
SUPPORTED_PROTOCOLS = frozenset({"http/protobuf"})
_SIGNALS = ("traces", "metrics")
# What FastMCP was configured with (`FASTMCP_TELEMETRY_MODE`, default native) before this module changed it.
FASTMCP_TELEMETRY_MODE = fastmcp.settings.telemetry_mode


class TelemetryConfigError(ValueError):
    """The `OTEL_*` settings ask for something this server will not do; the message names the variable."""


@dataclass(frozen=True)
class TelemetryPlan:
    """Which signals to export; both False means telemetry is off."""

    traces: bool
    metrics: bool

    @property
    def enabled(self) -> bool:
        return self.traces or self.metrics


def _signal_on(env: Mapping[str, str], signal: str) -> bool:
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    exporter = (env.get(variable) or "").strip().lower()
    if exporter == NONE:
        return False
    if exporter and exporter != OTLP:
        raise TelemetryConfigError(f"{variable} must be otlp or none, got {exporter!r}")
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    return bool(exporter or endpoint)


def plan_telemetry(env: Mapping[str, str]) -> TelemetryPlan:
    """Validate the `OTEL_*` settings and say which signals are on (raises `TelemetryConfigError`)."""
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return TelemetryPlan(False, False)
    plan = TelemetryPlan(*(_signal_on(env, signal) for signal in _SIGNALS))
    if not plan.enabled:
        return plan
    for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                     "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"):
        protocol = env.get(variable)
        if protocol and protocol not in SUPPORTED_PROTOCOLS:
            raise TelemetryConfigError(f"{variable} must be http/protobuf, got {protocol!r}")
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                     "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        if env.get(variable):
            try:
                require_https_or_loopback(env[variable], variable)
            except UntrustedUrl as exc:
                raise TelemetryConfigError(str(exc)) from None
    return plan


def header_secrets(env: Mapping[str, str]) -> list[str]:
    """The values of the OTLP header variables (`k=v,k2=v2`), which are credentials."""
    values = []
    for variable in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                     "OTEL_EXPORTER_OTLP_METRICS_HEADERS"):
        for pair in (env.get(variable) or "").split(","):
            _, _, value = pair.partition("=")
            if value.strip():
                values.append(unquote(value.strip()))
    return values


@dataclass
class TelemetryHandle:
    """The configured providers; `shutdown()` flushes and stops them (at server stop)."""

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None

    def shutdown(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                provider.shutdown()


def build_providers(plan: TelemetryPlan, redactor: Redactor) -> TelemetryHandle:
    """Providers with OTLP/HTTP exporters (configured by the SDK from `OTEL_*`), redaction included."""
    resource = Resource.create()  # service.name and more from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    tracer_provider = meter_provider = None
    if plan.traces:
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(OTLPSpanExporter()), redactor))
    if plan.metrics:
        meter_provider = MeterProvider(
            resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
            views=[View(instrument_name="*", attribute_keys=set(ALLOWED_ATTRIBUTES))])
    return TelemetryHandle(tracer_provider, meter_provider)


def configure_telemetry(plan: TelemetryPlan, redactor: Redactor,
                        env: Mapping[str, str] | None = None) -> TelemetryHandle | None:
    """Install global providers for the planned signals (`plan_telemetry`); None when telemetry is off.

    With telemetry off, FastMCP's own instrumentation is switched off too (`telemetry_mode="off"`).

    Example:
        >>> handle = configure_telemetry(settings.telemetry, redactor)  # exporters read os.environ
        >>> ...; handle and handle.shutdown()
    """
    env = os.environ if env is None else env
    # FastMCP's own spans and trace-context handling run on every request; with no exporter they
    # would serve nobody, so they are off then. With one, the operator's FastMCP setting stands.
    fastmcp.settings.telemetry_mode = FASTMCP_TELEMETRY_MODE if plan.enabled else "off"
    record_telemetry(plan.enabled)  # and so are this server's own upstream and layer spans
    if not plan.enabled:
        return None
    for value in header_secrets(env):
        redactor.add_secret(value)
    handle = build_providers(plan, redactor)
    if handle.tracer_provider is not None:
        trace.set_tracer_provider(handle.tracer_provider)
    if handle.meter_provider is not None:
        metrics.set_meter_provider(handle.meter_provider)
    return handle
