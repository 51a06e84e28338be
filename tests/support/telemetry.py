"""In-memory OpenTelemetry for the fast telemetry tests: providers set as the Azure Monitor distro sets them, around
exporters that keep what they are given while a test captures, and nothing between tests.

The distro (which azure_functions_runtime configures in a worker process, ``otel.py``) builds a tracer provider, a
logger provider with a handler on ``PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME``, a meter provider, and switches on the
Azure SDK's spans (azure-monitor-opentelemetry ``_configure.py``). These tests run the app in the test process
(``InProcessWorker``, with ``PYTHON_ENABLE_OPENTELEMETRY`` so the runtime attaches the host's trace context), so
the same shape is built here around in-memory exporters; what the distro itself exports, with the settings infra
deploys, is proved against a loopback ingestion endpoint (tests/e2e/test_telemetry_as_deployed.py).

OpenTelemetry keeps the first global provider of a process, so the pipeline is installed once per test session;
the Azure SDK's own spans are switched on only while a test captures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core.settings import settings as azure_core_settings
from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan
from opentelemetry import _logs, metrics, trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from recording_pipeline.edges.telemetry import APP_LOGGER


@dataclass
class Captured:
    """What was exported (and, for spans, what was merely recorded) since ``start``."""

    active: bool = False
    spans: list[ReadableSpan] = field(default_factory=list)
    recorded: list[ReadableSpan] = field(default_factory=list)  # every span that ended, exported or not
    logs: list[ReadableLogRecord] = field(default_factory=list)
    metrics: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    handlers: list[logging.Handler] = field(default_factory=list)  # the worker's handler on the app's logger

    def start(self) -> None:
        for handler in self.handlers:
            logging.getLogger(APP_LOGGER).addHandler(handler)
        self.spans.clear()
        self.recorded.clear()
        self.logs.clear()
        self.metrics.get_metrics_data()  # the reader is cumulative: tests compare against a baseline if they must
        azure_core_settings.tracing_implementation = OpenTelemetrySpan
        self.active = True

    def stop(self) -> None:
        for handler in self.handlers:  # other tests run without the cost of translating every log line
            logging.getLogger(APP_LOGGER).removeHandler(handler)
        self.active = False
        azure_core_settings.tracing_implementation = None
        self.spans.clear()
        self.recorded.clear()
        self.logs.clear()

    def metric_points(self) -> dict[str, list[Any]]:
        points: dict[str, list[Any]] = {}
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points


class _Spans(SpanExporter):
    def __init__(self, captured: Captured) -> None:
        self.captured = captured

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.captured.active:
            self.captured.spans.extend(spans)
        return SpanExportResult.SUCCESS


class _Recorded(SpanProcessor):
    def __init__(self, captured: Captured) -> None:
        self.captured = captured

    def on_end(self, span: ReadableSpan) -> None:
        if self.captured.active:
            self.captured.recorded.append(span)


class _Logs(LogRecordExporter):
    def __init__(self, captured: Captured) -> None:
        self.captured = captured

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self.captured.active:
            self.captured.logs.extend(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


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


def install_capture() -> Captured:
    """The worker's pipeline (logger name as infra/ sets it), exporting into one Captured."""
    captured = Captured()
    tracer_provider, _, _ = install_pipeline(_Spans(captured), _Logs(captured), captured.metrics, APP_LOGGER)
    tracer_provider.add_span_processor(_Recorded(captured))
    app_logger = logging.getLogger(APP_LOGGER)
    captured.handlers = [h for h in app_logger.handlers if isinstance(h, LoggingHandler)]
    captured.stop()
    return captured
