"""Telemetry: every log line of a job carries the chunk's identity; spans wrap
the steps; metrics count bytes, durations, time left and failures."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devtools.simulator import Fault
from recording_pipeline.app.webhook import WebhookRequest
from recording_pipeline.app.worker import handle_chunk_message
from recording_pipeline.core.jobs import encode_job, plan_jobs
from recording_pipeline.edges.telemetry import CONTEXT_FIELDS, JsonLineFormatter
from tests.support.stack import Stack

MIB = 1024 * 1024
CALL = "ffffffff-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield spans, reader


def _metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    points: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


async def _one_job(stack: Stack, size: int, doc: str) -> tuple[str, Any]:
    from recording_pipeline.core.events import parse_recording_event, read_envelope

    sim = stack.simulator
    chunk = sim.add(doc, size, call_id=CALL)
    runtime = await stack.runtime()
    event = parse_recording_event(read_envelope(sim.event(CALL, "recT", [chunk], event_id=f"evt-{doc}"), "eventgrid"))
    [job] = plan_jobs(event, runtime.settings.acs.credentials.endpoint, 24, runtime.webhook.url_policy)
    return encode_job(job), runtime


async def test_every_log_line_of_a_job_carries_its_identity(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="recording_pipeline")
    stack.simulator.faults.append(Fault(kind="media", status=503))
    text, runtime = await _one_job(stack, 2 * MIB, "doc-logs")
    try:
        await handle_chunk_message(text, 1, runtime.worker)
    finally:
        await runtime.close()
    ours = [r for r in caplog.records if r.name.startswith("recording_pipeline")]
    assert len(ours) >= 3  # the retry warning, "archived", "deleted"
    for record in ours:
        values = {name: getattr(record, name, None) for name in CONTEXT_FIELDS}
        assert values == {
            "event_id": "evt-doc-logs",
            "call_id": CALL,
            "recording_id": "recT",
            "chunk_index": 0,
            "document_id": "doc-logs",
        }, record.getMessage()
    line = json.loads(JsonLineFormatter().format(next(r for r in ours if "archived" in r.getMessage())))
    assert line["document_id"] == "doc-logs" and line["bytes"] == 2 * MIB and line["seconds_left"] > 0
    assert line["level"] == "info" and line["message"].startswith("recording chunk archived")


async def test_spans_around_each_step_and_metrics(
    stack: Stack, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    spans, reader = otel
    spans.clear()
    text, runtime = await _one_job(stack, 3 * MIB + 5, "doc-spans")
    failing, other = await _one_job(stack, MIB, "doc-fails")
    try:
        await handle_chunk_message(text, 1, runtime.worker)
        stack.simulator.faults.append(Fault(kind="metadata", status=400))
        with pytest.raises(Exception, match="400"):
            await handle_chunk_message(failing, 1, other.worker)
    finally:
        await runtime.close()
        await other.close()
    finished = {
        s.name: s
        for s in spans.get_finished_spans()
        if s.attributes and s.attributes.get("recording.document_id") == "doc-spans"
    }
    assert {
        "archive_chunk",
        "acs.download_metadata",
        "transfer",
        "archive.commit",
        "archive.verify",
        "acs.delete",
    } <= set(finished)
    root = finished["archive_chunk"]
    assert root.attributes is not None and root.attributes["recording.document_id"] == "doc-spans"
    assert root.attributes["recording.outcome"] == "archived"
    transfer = finished["transfer"]
    assert transfer.attributes is not None and transfer.attributes["recording.bytes"] == 3 * MIB + 5
    assert transfer.parent is not None and transfer.parent.span_id == root.context.span_id
    points = _metric_points(reader)
    assert sum(p.value for p in points["recording.bytes_archived"]) >= 3 * MIB + 5
    assert any(p.count >= 1 for p in points["recording.chunk.duration"])
    assert any(p.count >= 1 and p.min > 0 for p in points["recording.chunk.seconds_left"])
    kinds = {p.attributes["kind"] for p in points["recording.chunk.failures"]}
    assert "AcsPermanentError" in kinds
    assert {p.attributes["outcome"] for p in points["recording.chunk.outcomes"]} >= {"archived"}


def test_request_adapter_keeps_headers_case_insensitive() -> None:
    request = WebhookRequest("POST", {"Content-Type": "application/json"}, b"")
    assert request.header("content-type") == "application/json"
