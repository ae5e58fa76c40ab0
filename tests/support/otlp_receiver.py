"""A loopback OTLP/HTTP receiver that keeps the raw protobufs (for canary scans) and decodes them."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (ExportMetricsServiceRequest,
                                                                           ExportMetricsServiceResponse)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                       ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

WAIT_TIMEOUT_S = 20.0


def attribute_map(attributes) -> dict[str, Any]:
    """OTLP KeyValues as a plain dict (strings, numbers, bools; arrays as tuples)."""
    return {item.key: _value(item.value) for item in attributes}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """Collects what exporters post to `/v1/traces` and `/v1/metrics`.

    Example:
        >>> receiver = OtlpReceiver()
        >>> with ThreadedServer(receiver.app) as server: ...  # OTEL_EXPORTER_OTLP_ENDPOINT=server.url
        >>> receiver.wait_for(lambda: receiver.spans())
    """

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self._traces: list[ExportTraceServiceRequest] = []
        self._metrics: list[ExportMetricsServiceRequest] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/traces", self._on_traces, methods=["POST"]),
                                     Route("/v1/metrics", self._on_metrics, methods=["POST"])])

    async def _body(self, request: Request) -> bytes:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.raw.append(body)
        return body

    async def _on_traces(self, request: Request) -> Response:
        message = ExportTraceServiceRequest.FromString(await self._body(request))
        with self._lock:
            self._traces.append(message)
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    async def _on_metrics(self, request: Request) -> Response:
        message = ExportMetricsServiceRequest.FromString(await self._body(request))
        with self._lock:
            self._metrics.append(message)
        return Response(ExportMetricsServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    def spans(self) -> list:
        """Every span received, in arrival order, once (an exporter retries a batch whose reply was slow)."""
        with self._lock:
            received = [span for request in self._traces for resource in request.resource_spans
                        for scope in resource.scope_spans for span in scope.spans]
        unique = {}
        for span in received:
            unique.setdefault(span.span_id, span)
        return list(unique.values())

    def data_points(self, metric_name: str) -> list:
        """Every data point of one metric, across exports."""
        points = []
        with self._lock:
            for request in self._metrics:
                for resource in request.resource_metrics:
                    for scope in resource.scope_metrics:
                        for metric in scope.metrics:
                            if metric.name == metric_name:
                                kind = metric.WhichOneof("data")
                                points += list(getattr(metric, kind).data_points)
        return points

    def metric_names(self) -> set[str]:
        with self._lock:
            return {metric.name for request in self._metrics for resource in request.resource_metrics
                    for scope in resource.scope_metrics for metric in scope.metrics}

    def wait_for(self, condition: Callable[[], Any], timeout: float = WAIT_TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = condition()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError("the OTLP receiver did not get what the test waited for")

    def reset(self) -> None:
        with self._lock:
            self.raw.clear()
            self._traces.clear()
            self._metrics.clear()
