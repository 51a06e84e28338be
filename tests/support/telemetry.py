"""In-memory OpenTelemetry for the tests: the worker's pipeline (devtools.worker_telemetry) around exporters that keep
what they are given while a test captures, and nothing between tests.

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
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from devtools.worker_telemetry import install_pipeline
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


def install_capture() -> Captured:
    """The worker's pipeline (logger name as infra/ sets it), exporting into one Captured."""
    captured = Captured()
    tracer_provider, _, _ = install_pipeline(_Spans(captured), _Logs(captured), captured.metrics, APP_LOGGER)
    tracer_provider.add_span_processor(_Recorded(captured))
    app_logger = logging.getLogger(APP_LOGGER)
    captured.handlers = [h for h in app_logger.handlers if isinstance(h, LoggingHandler)]
    captured.stop()
    return captured
