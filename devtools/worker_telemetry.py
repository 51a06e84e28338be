"""What the Functions Python worker does for telemetry, done locally: the same records, written as JSON lines.

In Azure, with ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``, the worker calls the
Azure Monitor distro once at start, before it imports function_app.py: a tracer
provider, a logger provider with a handler on ``PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME``
(the root logger if unset), a meter provider, and the Azure SDK's own spans
(``azure.core.settings.tracing_implementation``); azure-functions-python-worker
``runtimes/v2/azure_functions_runtime/otel.py``, azure-monitor-opentelemetry
``_configure.py``. ``install_pipeline`` builds the same providers around any
exporters (the tests give in-memory ones); ``configure_local_worker`` gives it
exporters that write JSON lines to ``LOCAL_TELEMETRY_FILE`` (stderr if unset), so
``serve`` shows locally what Application Insights would receive: log records with
their attributes (custom dimensions there), spans with their parents, metric
points (delta, as the Azure Monitor exporter sends them).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from azure.core.settings import settings as azure_core_settings
from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan
from opentelemetry import _logs, metrics, trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

WORKER_TELEMETRY_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
LOGGER_NAME_SETTING = "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"
LOCAL_FILE_SETTING = "LOCAL_TELEMETRY_FILE"
DELTA: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.CUMULATIVE,
    Histogram: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.DELTA,
}


def install_pipeline(
    span_exporter: SpanExporter, log_exporter: LogRecordExporter, metric_reader: MetricReader, logger_name: str
) -> tuple[TracerProvider, LoggerProvider, MeterProvider]:
    """The global providers, as the distro sets them: once per process (OpenTelemetry keeps the first)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    _logs.set_logger_provider(logger_provider)
    logger = logging.getLogger(logger_name)
    if not any(isinstance(h, LoggingHandler) for h in logger.handlers):
        logger.addHandler(LoggingHandler(logger_provider=logger_provider))
    meter_provider = MeterProvider(metric_readers=[metric_reader])
    metrics.set_meter_provider(meter_provider)
    azure_core_settings.tracing_implementation = OpenTelemetrySpan  # the distro's "azure_sdk" instrumentation
    return tracer_provider, logger_provider, meter_provider


def configure_local_worker(env: Mapping[str, str]) -> bool:
    """At the local worker's start, as the real worker's init, when ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``.

    Metric points are exported every ``OTEL_METRIC_EXPORT_INTERVAL`` ms (OpenTelemetry's own setting, 60 s default).
    """
    if (env.get(WORKER_TELEMETRY_SETTING) or "").strip().lower() != "true":
        return False
    path = (env.get(LOCAL_FILE_SETTING) or "").strip()
    sink = JsonLines(open(path, "a", encoding="utf-8") if path else sys.stderr)  # noqa: SIM115 - lives with the process
    install_pipeline(
        SpanLines(sink),
        LogLines(sink),
        PeriodicExportingMetricReader(MetricLines(sink)),
        env.get(LOGGER_NAME_SETTING) or "",
    )
    return True


class JsonLines:
    """One JSON object a line, whole lines only, from any thread."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            for record in records:
                self.stream.write(json.dumps(record, default=str) + "\n")
            self.stream.flush()


def _hex(value: int | None, width: int) -> str | None:
    return f"{value:0{width}x}" if value else None


def span_line(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    return {
        "record": "span",
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": _hex(context.trace_id if context else None, 32),
        "span_id": _hex(context.span_id if context else None, 16),
        "parent_span_id": _hex(span.parent.span_id if span.parent else None, 16),
        "status": span.status.status_code.name,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events],
    }


def log_line(record: ReadableLogRecord) -> dict[str, Any]:
    log = record.log_record
    return {
        "record": "log",
        "time": log.timestamp,
        "severity": log.severity_text,
        "body": log.body,
        "trace_id": _hex(log.trace_id, 32),
        "span_id": _hex(log.span_id, 16),
        "attributes": dict(log.attributes or {}),
    }


def metric_lines(data: MetricsData) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = metric.data.data_points
                kind = {Sum: "sum", Gauge: "gauge", HistogramData: "histogram"}.get(type(metric.data), "other")
                for point in points:
                    line: dict[str, Any] = {
                        "record": "metric",
                        "name": metric.name,
                        "kind": kind,
                        "time": point.time_unix_nano,
                        "attributes": dict(point.attributes or {}),
                    }
                    if isinstance(point, NumberDataPoint):
                        line["value"] = point.value
                    elif isinstance(point, HistogramDataPoint):
                        line.update(count=point.count, sum=point.sum, min=point.min, max=point.max)
                    lines.append(line)
    return lines


class SpanLines(SpanExporter):
    def __init__(self, sink: JsonLines) -> None:
        self.sink = sink

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sink.write([span_line(s) for s in spans])
        return SpanExportResult.SUCCESS


class LogLines(LogRecordExporter):
    def __init__(self, sink: JsonLines) -> None:
        self.sink = sink

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.sink.write([log_line(r) for r in batch])
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class MetricLines(MetricExporter):
    def __init__(self, sink: JsonLines) -> None:
        super().__init__(preferred_temporality=DELTA)
        self.sink = sink

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.sink.write(metric_lines(metrics_data))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every record a local run wrote (a line cut short by a killed process is skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
