"""Telemetry the Functions way: identity on every log line, spans under the host's invocation, quiet storage.

The worker sets the identity once per job (a context variable); a record factory
copies it onto every log record, so an on-call engineer can follow one chunk
across retries, instances and modules. Locally the records are JSON lines.

In Azure the Python worker, not this app, configures OpenTelemetry: with
``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` it calls the Azure Monitor
distro once, at worker start, with ``PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME``,
before it imports function_app.py, and before each async invocation it attaches
the trace context the host sent, so the app's spans are children of the host's
invocation (azure-functions-python-worker ``runtimes/v2/azure_functions_runtime/otel.py``
and ``handle_event.py``). It then tells the host ``WorkerOpenTelemetryEnabled``,
and the host stops forwarding the worker's log lines (azure-functions-host
``src/WebJobs.Script/Diagnostics/OpenTelemetry/OpenTelemetryConfigurationExtensions.cs``),
so each line is exported once, with its fields. ``configure_app_telemetry`` is
what the app adds at import: nothing that exports, only the quieting of the
storage calls made per block and per lease renewal.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import Attributes

CONTEXT_FIELDS = ("event_id", "call_id", "recording_id", "chunk_index", "document_id")
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("recording_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current recording identity onto a record (for handlers that see foreign records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record)
        return True


def _stamp(record: logging.LogRecord) -> None:
    for key, value in (_context.get() or {}).items():
        if not hasattr(record, key):
            setattr(record, key, value)


def _install_record_factory() -> None:
    """Every record created anywhere carries the identity, whatever handler receives it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_recording_context", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _stamp(record)
        return record

    factory._recording_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_record_factory()


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(line, default=str)


def install_context_filter(logger: logging.Logger | None = None) -> None:
    """Attach the identity filter to every handler of ``logger`` (default: root)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())


def configure_json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --- traces and metrics (OpenTelemetry API: no-ops until a provider is configured) -----------

APP_LOGGER = "recording_pipeline"  # PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME in Azure: only this package's lines
WORKER_TELEMETRY_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
LOGGER_NAME_SETTING = "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"

tracer = trace.get_tracer("recording_pipeline")
_meter = metrics.get_meter("recording_pipeline")
BYTES_ARCHIVED = _meter.create_counter("recording.bytes_archived", unit="By", description="media bytes archived")
CHUNK_DURATION = _meter.create_histogram("recording.chunk.duration", unit="s", description="transfer to verified")
CHUNK_THROUGHPUT = _meter.create_histogram(
    "recording.chunk.throughput", unit="MBy/s", description="archived bytes per second of transfer"
)
SECONDS_LEFT = _meter.create_histogram(
    "recording.chunk.seconds_left", unit="s", description="time left before ACS deletes the chunk, when it was archived"
)
EVENT_TO_DELETE = _meter.create_histogram(
    "recording.chunk.event_to_delete",
    unit="s",
    description="from the event's time to the DELETE of ACS's copy (chunks the archiving attempt deleted)",
)
OUTCOMES = _meter.create_counter("recording.chunk.outcomes", description="jobs by outcome")
FAILURES = _meter.create_counter("recording.chunk.failures", description="failed attempts by kind")
POISON_DEPTH = _meter.create_gauge(
    "recording.poison_queue.depth", description="messages waiting in the poison queue, read every 5 minutes"
)
DEADLETTER_WAITING = _meter.create_gauge(
    "recording.deadletter.waiting",
    description="Event Grid dead-letter blobs not redriven yet, read every 5 minutes",
)
FIXITY_BYTES = _meter.create_counter(
    "recording.fixity.bytes_verified", unit="By", description="archived media read and re-hashed by the fixity audit"
)
FIXITY_CHUNKS = _meter.create_counter(
    "recording.fixity.chunks", description="chunks the fixity audit checked, by result (ok, mismatch, missing, offline)"
)
FIXITY_PASS_DAYS = _meter.create_gauge(
    "recording.fixity.pass_days",
    unit="d",
    description="how long the fixity audit's last whole pass over the archive took",
)
EVENTS_PUBLISHED = _meter.create_counter(
    "recording.events.published", description="outbound events by type and result (delivered, kept, redelivered)"
)

# One call per staged block and one per lease renewal: ~1,300 dependency records an hour for a 2 GB chunk, each
# with its HTTP child. The per-chunk spans say what they would (bytes, time); a failure is still reported.
NOISY_OPERATIONS = frozenset({"BlobClient.stage_block", "BlobLeaseClient.renew"})


def span_attributes() -> dict[str, Any]:
    """The current recording identity as span attributes."""
    return {f"recording.{k}": v for k, v in (_context.get() or {}).items()}


class QuietStorageSampler(Sampler):
    """Records but never exports the noisy storage calls and their HTTP children; defers to ``base`` otherwise.

    Recorded (``RECORD_ONLY``), not dropped, so ``StorageFailureReporter`` still sees how each one ended.
    """

    def __init__(self, base: Sampler) -> None:
        self.base = base

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context)
        under_noise = isinstance(parent, ReadableSpan) and parent.name in NOISY_OPERATIONS
        if name in NOISY_OPERATIONS or under_noise:
            return SamplingResult(Decision.RECORD_ONLY, attributes, parent.get_span_context().trace_state)
        return self.base.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"QuietStorageSampler({self.base.get_description()})"


class StorageFailureReporter(SpanProcessor):
    """A noisy call that failed becomes one warning log record (with the chunk's identity), so no error is lost."""

    def on_end(self, span: ReadableSpan) -> None:
        if span.name not in NOISY_OPERATIONS or span.context is None or span.context.trace_flags.sampled:
            return
        if span.status.status_code is not StatusCode.ERROR:
            return
        attributes = span.attributes or {}
        took = (span.end_time or 0) - (span.start_time or 0)
        logging.getLogger(__name__).warning(
            "storage call failed: %s (%s) after %.0f ms",
            span.name,
            attributes.get("error.type") or span.status.description,
            took / 1e6,
            extra={"operation": span.name, "error_type": str(attributes.get("error.type") or "")},
        )


def quiet_storage_noise(provider: Any) -> bool:
    """Wrap the provider's sampler once (the worker built the provider; function_app.py may be imported again).

    The SDK hands out one tracer per instrumentation scope and caches it with the sampler of that moment, so a
    tracer handed out already gets the wrapped sampler too.
    """
    if not isinstance(provider, TracerProvider):
        return False
    if not isinstance(provider.sampler, QuietStorageSampler):
        provider.sampler = QuietStorageSampler(provider.sampler)
        provider.add_span_processor(StorageFailureReporter())
    for handed_out in dict(getattr(provider, "_tracers", {})).values():
        if not isinstance(getattr(handed_out, "sampler", None), QuietStorageSampler):
            handed_out.sampler = provider.sampler
    return True


def configure_app_telemetry(env: Mapping[str, str] | None = None) -> bool:
    """What function_app.py does at import. Configures no exporter: that is the worker's, once per process.

    True when a tracer provider is there to quiet (the worker configured one). With Application Insights set but
    the worker's telemetry off, the host forwards the log lines without their fields: say how to fix that.
    """
    env = os.environ if env is None else env
    app_logger = logging.getLogger(APP_LOGGER)
    if app_logger.level == logging.NOTSET:
        app_logger.setLevel(logging.INFO)
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    worker_managed = (env.get(WORKER_TELEMETRY_SETTING) or "").strip().lower() == "true"
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING") and not worker_managed:
        logging.getLogger(__name__).warning(
            "Application Insights is set but the worker's telemetry is off: set %s=true and %s=%s so each log line "
            "is exported once, with its fields, and spans join the host's invocation",
            WORKER_TELEMETRY_SETTING,
            LOGGER_NAME_SETTING,
            APP_LOGGER,
        )
    return quiet_storage_noise(trace.get_tracer_provider())
