"""Logging that carries a recording's identity on every line.

The worker sets the identity once per job (a context variable); a filter copies
it onto every log record, so an on-call engineer can follow one chunk across
retries, instances and modules. Locally the records are JSON lines; in Azure
the Functions host ships the same records (fields as custom dimensions) to
Application Insights.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from opentelemetry import metrics, trace

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
OUTCOMES = _meter.create_counter("recording.chunk.outcomes", description="jobs by outcome")
FAILURES = _meter.create_counter("recording.chunk.failures", description="failed attempts by kind")


def span_attributes() -> dict[str, Any]:
    """The current recording identity as span attributes."""
    return {f"recording.{k}": v for k, v in (_context.get() or {}).items()}


def configure_azure_monitor_if_set() -> bool:
    """In Azure: export traces, metrics and this package's logs (with their fields) to Application Insights."""
    import os

    if not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(logger_name="recording_pipeline")
    return True
