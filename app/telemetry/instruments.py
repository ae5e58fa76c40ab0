"""The server's spans and metrics: one place that names every instrument and the attributes it records.

Everything recorded here uses only allow-listed attribute keys (`app.telemetry.redaction`) with
low-cardinality values: tool names, outcomes, upstream names, denial layers and reasons (exception
class names, never messages). Until `configure_telemetry` installs providers, the OpenTelemetry API
hands out no-op instruments, so none of this costs anything when telemetry is off.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import ParamSpec, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

SCOPE = "mcp-tee"
OK, ERROR, DENIED = "ok", "error", "denied"
QUOTA_LAYER = "quota"  # `CapabilityDenied.layer` of quota refusals

P = ParamSpec("P")
R = TypeVar("R")
# A callback yields (value, attributes) pairs for an observable gauge.
GaugeReading = Callable[[], Iterable[tuple[float, dict[str, str]]]]


_recording = False  # set by `configure_telemetry`: False when no exporter is configured


def record_telemetry(enabled: bool) -> None:
    """Open upstream and layer spans only when something exports them."""
    global _recording
    _recording = enabled


def tracer() -> trace.Tracer:
    return trace.get_tracer(SCOPE)


def layer_span(name: str, attributes: dict[str, str]):
    """An INTERNAL span around a capability layer's wait (a confirmation prompt, an upstream slot).

    Exceptions pass through unrecorded: the layer turns them into a denial, which the call's span carries.
    """
    if not _recording:
        return nullcontext()
    return tracer().start_as_current_span(name, attributes=attributes, record_exception=False,
                                          set_status_on_exception=False)


class Instruments:
    """Counters and histograms for tool calls, denials, quota refusals and upstream calls.

    The API's proxy meter binds these to the real provider once `configure_telemetry` installs it,
    so one process-wide instance (`instruments()`) serves every layer and upstream client.

    Example:
        >>> instruments().call_finished("query_database", OK, 0.012)
        >>> with instruments().upstream_span("postgres", "query"): ...
    """

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        self._meter = meter or metrics.get_meter(SCOPE)
        self._calls = self._meter.create_counter("mcp_tee.tool.calls", unit="{call}",
                                                 description="Tool calls by tool and outcome")
        self._call_duration = self._meter.create_histogram("mcp_tee.tool.duration", unit="s",
                                                           description="Tool call latency, denials included")
        self._denials = self._meter.create_counter("mcp_tee.denials", unit="{call}",
                                                   description="Calls refused, by capability layer and reason")
        self._quota_refusals = self._meter.create_counter("mcp_tee.quota.refusals", unit="{call}",
                                                          description="Calls refused by a quota, by tool")
        self._upstream_duration = self._meter.create_histogram("mcp_tee.upstream.duration", unit="s",
                                                               description="Upstream call latency by outcome")

    def call_finished(self, tool: str, outcome: str, seconds: float) -> None:
        attributes = {"mcp_tee.tool": tool, "mcp_tee.outcome": outcome}
        self._calls.add(1, attributes)
        self._call_duration.record(seconds, attributes)

    def denied(self, tool: str, layer: str, reason: str) -> None:
        self._denials.add(1, {"mcp_tee.denial.layer": layer, "mcp_tee.denial.reason": reason})
        if layer == QUOTA_LAYER:
            self._quota_refusals.add(1, {"mcp_tee.tool": tool})

    def gauge(self, name: str, description: str, reading: GaugeReading, unit: str = "1") -> None:
        """Register an observable gauge read at each export (breaker state, pool usage, audit buffer)."""

        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for value, attributes in reading():
                yield Observation(value, attributes)

        self._meter.create_observable_gauge(name, callbacks=[observe], unit=unit, description=description)

    @contextmanager
    def upstream_span(self, upstream: str, operation: str) -> Iterator[Span]:
        """A CLIENT span and a latency sample for one upstream call; errors are recorded by class only."""
        started = time.perf_counter()
        outcome = OK
        with tracer().start_as_current_span(f"{upstream} {operation}", kind=SpanKind.CLIENT,
                                            attributes={"mcp_tee.upstream": upstream},
                                            record_exception=False, set_status_on_exception=False) as span:
            try:
                yield span
            except BaseException as exc:
                outcome = ERROR
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                self._upstream_duration.record(time.perf_counter() - started,
                                               {"mcp_tee.upstream": upstream, "mcp_tee.outcome": outcome})


_instruments: Instruments | None = None


def instruments() -> Instruments:
    """The process-wide instruments (created on first use)."""
    global _instruments
    if _instruments is None:
        _instruments = Instruments()
    return _instruments


def traced_upstream(upstream: str, operation: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an upstream client's async method: one CLIENT span and one latency sample per call.

    Example:
        >>> @traced_upstream("postgres", "query")
        ... async def query(self, sql: str, *, max_rows: int) -> QueryResult: ...
    """

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(method)
        async def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _recording:
                return await method(*args, **kwargs)
            with instruments().upstream_span(upstream, operation):
                return await method(*args, **kwargs)

        return traced

    return decorate
