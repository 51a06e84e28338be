"""Telemetry: every log line of a job carries the chunk's identity; spans wrap
the steps; metrics count bytes, durations, time left and failures.

The app in this process under azure_functions_runtime, with providers shaped as the
Azure Monitor distro's, captured in memory (tests/support/telemetry.py): one record per
log line with the identity as attributes, the app's spans under the host's invocation,
the per-block and per-renewal storage calls kept out while their failures are not.
What the distro itself exports with infra's settings: test_telemetry_as_deployed.py."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Status, StatusCode

from devtools.local_host import LocalFunctionsHost
from devtools.simulator import Fault
from recording_pipeline.app.webhook import WebhookRequest
from recording_pipeline.app.worker import handle_chunk_message
from recording_pipeline.core.jobs import encode_job, plan_jobs
from recording_pipeline.core.naming import chunk_stem, lock_name, recording_key
from recording_pipeline.edges.telemetry import (
    CONTEXT_FIELDS,
    NOISY_OPERATIONS,
    JsonLineFormatter,
    QuietStorageSampler,
    configure_app_telemetry,
    log_context,
)
from tests.support.stack import Stack, post_events, wait_until
from tests.support.telemetry import Captured

MIB = 1024 * 1024
CALL = "ffffffff-0000-0000-0000-000000000000"
STEP_SPANS = {"archive_chunk", "acs.download_metadata", "transfer", "archive.commit", "archive.verify", "acs.delete"}


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


async def test_spans_around_each_step_and_metrics(stack: Stack, telemetry: Captured) -> None:
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
        s.name: s for s in telemetry.spans if s.attributes and s.attributes.get("recording.document_id") == "doc-spans"
    }
    assert set(finished) >= STEP_SPANS
    root = finished["archive_chunk"]
    assert root.attributes is not None and root.attributes["recording.document_id"] == "doc-spans"
    assert root.attributes["recording.outcome"] == "archived"
    transfer = finished["transfer"]
    assert transfer.attributes is not None and transfer.attributes["recording.bytes"] == 3 * MIB + 5
    assert transfer.parent is not None and transfer.parent.span_id == root.context.span_id
    points = telemetry.metric_points()
    assert sum(p.value for p in points["recording.bytes_archived"]) >= 3 * MIB + 5
    assert any(p.count >= 1 for p in points["recording.chunk.duration"])
    assert any(p.count >= 1 and p.min > 0 for p in points["recording.chunk.seconds_left"])
    kinds = {p.attributes["kind"] for p in points["recording.chunk.failures"]}
    assert "AcsPermanentError" in kinds
    assert {p.attributes["outcome"] for p in points["recording.chunk.outcomes"]} >= {"archived"}


def test_request_adapter_keeps_headers_case_insensitive() -> None:
    request = WebhookRequest("POST", {"Content-Type": "application/json"}, b"")
    assert request.header("content-type") == "application/json"


# --- the worker's pipeline, through function_app.py under the local host ------------------------------------------


def _parent_is_invocation(span: ReadableSpan, host: LocalFunctionsHost, function: str) -> bool:
    sent = (
        {
            t.traceparent.split("-")[1:3] == [f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}"]
            for t in host.stats.traces.get(function, [])
        }
        if span.parent and span.context
        else set()
    )
    return True in sent


async def _archive_through_the_local_host(
    stack: Stack, doc: str, size: int, rate: float | None = None, **overrides: str
) -> tuple[LocalFunctionsHost, Any]:
    sim = stack.simulator
    chunk = sim.add(doc, size, call_id=CALL, rate=rate)
    # The runtime attaches the host's trace context before each invocation (PYTHON_ENABLE_OPENTELEMETRY; the
    # providers are the test's, tests/support/telemetry.py).
    local = await stack.local_host(in_process=True, PYTHON_ENABLE_OPENTELEMETRY="true", **overrides)
    try:
        status, _ = await post_events(
            local.url, [sim.event(CALL, "recT", [chunk], event_id=f"evt-{doc}")], stack.env["WEBHOOK_KEY"]
        )
        assert status == 200

        async def deleted() -> bool:
            return doc in sim.deleted

        await wait_until(deleted, timeout=120)
    finally:
        await local.stop()
    return local.host, chunk


async def test_one_record_per_log_line_with_the_identity_as_dimensions(
    stack: Stack, telemetry: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recording_pipeline")
    await _archive_through_the_local_host(stack, "doc-one-record", 2 * MIB)
    lines = [r for r in caplog.records if r.name.startswith("recording_pipeline")]
    exported = [r.log_record for r in telemetry.logs]
    # Every line the app wrote is exported once, and nothing else of its loggers is.
    assert sorted(r.getMessage() for r in lines) == sorted(str(r.body) for r in exported)
    [archived] = [r for r in exported if str(r.body).startswith("recording chunk archived")]
    attributes = dict(archived.attributes or {})
    assert {k: attributes[k] for k in CONTEXT_FIELDS} == {
        "event_id": "evt-doc-one-record",
        "call_id": CALL,
        "recording_id": "recT",
        "chunk_index": 0,
        "document_id": "doc-one-record",
    }
    assert (
        attributes["bytes"] == 2 * MIB
        and isinstance(attributes["seconds_left"], int)
        and attributes["seconds_left"] > 0
    )
    [deleted] = [r for r in exported if str(r.body).startswith("recording chunk deleted from ACS")]
    latency = dict(deleted.attributes or {})["event_to_delete_seconds"]
    assert isinstance(latency, float) and 0 < latency < 60
    [state] = [r for r in exported if str(r.body).startswith("recording state")]
    assert {k: v for k, v in dict(state.attributes or {}).items() if k in ("recording_key", "recording_state")} == {
        "recording_key": "r-recT",
        "recording_state": "complete",
    }
    assert dict(state.attributes or {})["chunks_archived"] == 1 == dict(state.attributes or {})["chunks_total"]
    assert any(p.count >= 1 for p in telemetry.metric_points()["recording.chunk.event_to_delete"])
    # The record belongs to the invocation's trace, as the host's own records do.
    job_traces = {s.context.trace_id for s in telemetry.spans if s.name == "archive_chunk" and s.context}
    assert archived.trace_id in job_traces


async def test_the_apps_spans_are_children_of_the_hosts_invocation(stack: Stack, telemetry: Captured) -> None:
    host, _ = await _archive_through_the_local_host(stack, "doc-parent", MIB)
    [root] = [s for s in telemetry.spans if s.name == "archive_chunk"]
    assert _parent_is_invocation(root, host, "archive_recording_chunk")
    by_id = {s.context.span_id: s for s in telemetry.spans if s.context}
    steps = [s for s in telemetry.spans if s.name in STEP_SPANS - {"archive_chunk"}]
    assert {s.name for s in steps} == STEP_SPANS - {"archive_chunk"}
    for step in steps:  # each step below the job's span (directly, or inside another step), in the invocation's trace
        ancestor = step
        while ancestor is not root and ancestor.parent is not None and ancestor.parent.span_id in by_id:
            ancestor = by_id[ancestor.parent.span_id]
        assert ancestor is root, step.name
        assert step.context is not None and root.context is not None
        assert step.context.trace_id == root.context.trace_id


async def test_block_and_lease_renewal_calls_are_not_exported_but_their_failures_are(
    stack: Stack, telemetry: Captured, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recording_pipeline.app.chunk_steps as steps

    # A claimed copy takes the lease once it has run half the claim's window; this one at once (the worker
    # runs in this process), so that its renewals happen in a copy of a few seconds.
    monkeypatch.setattr(steps, "LEASE_AFTER_SECONDS", 0.0)
    doc, size = "doc-quiet", 2 * MIB
    stem = chunk_stem(CALL, recording_key("recT", None), 0, doc)
    lock = blob_service.get_container_client(stack.state_container).get_blob_client(lock_name(stem))

    async def break_the_lease_midway() -> None:
        # The lease is renewed every 5 s; breaking it makes the next renewal fail, for real.
        await wait_until(lambda: _renewed(telemetry), timeout=60, interval=0.1)
        await BlobLeaseClient(lock).break_lease(lease_break_period=0)

    import asyncio

    breaker = asyncio.create_task(break_the_lease_midway())
    # 64 KiB blocks, 2 MiB at 180 KiB/s: 32 staged blocks and at least two renewals in ~11 s.
    await _archive_through_the_local_host(stack, doc, size, rate=180 * 1024, TRANSFER_BLOCK_SIZE_MIB="0.0625")
    await breaker
    recorded = [s.name for s in telemetry.recorded]
    assert recorded.count("BlobClient.stage_block") >= 32 and recorded.count("BlobLeaseClient.renew") >= 2
    exported = {s.context.span_id: s for s in telemetry.spans if s.context}
    assert not NOISY_OPERATIONS & {s.name for s in exported.values()}
    noisy_ids = {s.context.span_id for s in telemetry.recorded if s.name in NOISY_OPERATIONS and s.context}
    assert not [s for s in exported.values() if s.parent and s.parent.span_id in noisy_ids]  # nor their HTTP calls
    # What each chunk needs is there: the steps, and the Azure SDK's per-chunk calls.
    assert {s.name for s in exported.values()} >= STEP_SPANS
    assert "BlobClient.commit_block_list" in {s.name for s in exported.values()}
    # The renewal that failed is one warning record, with the chunk's identity.
    failures = [r.log_record for r in telemetry.logs if str(r.log_record.body).startswith("storage call failed")]
    assert len(failures) == 1, [str(f.body) for f in failures]
    attributes = dict(failures[0].attributes or {})
    assert attributes["operation"] == "BlobLeaseClient.renew" and attributes["document_id"] == doc


async def _renewed(telemetry: Captured) -> bool:
    return any(s.name == "BlobLeaseClient.renew" for s in telemetry.recorded)


async def test_a_failed_block_upload_is_reported_with_the_identity_and_nothing_else_of_it(telemetry: Captured) -> None:
    assert configure_app_telemetry({})  # as function_app.py does: the pipeline is there, so it is quieted
    tracer = trace.get_tracer("azure.core.tracing.ext.opentelemetry_span")
    with log_context(event_id="e", call_id="c", recording_id="r", chunk_index=3, document_id="d"):
        with tracer.start_as_current_span("BlobClient.stage_block") as span:
            with tracer.start_as_current_span("PUT", kind=trace.SpanKind.CLIENT) as http:
                http.set_attribute("http.response.status_code", 500)
            span.set_attribute("error.type", "azure.core.exceptions.HttpResponseError")
            span.set_status(Status(StatusCode.ERROR, "500"))
        with tracer.start_as_current_span("BlobClient.stage_block"):
            pass  # a success: nothing at all
    assert [s.name for s in telemetry.recorded] == ["PUT", "BlobClient.stage_block", "BlobClient.stage_block"]
    assert telemetry.spans == []
    [record] = [r.log_record for r in telemetry.logs]
    assert str(record.body).startswith("storage call failed: BlobClient.stage_block")
    assert dict(record.attributes or {})["chunk_index"] == 3
    assert dict(record.attributes or {})["error_type"] == "azure.core.exceptions.HttpResponseError"


def test_the_app_configures_no_exporter_and_quiets_the_workers_provider_once(
    telemetry: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    provider = trace.get_tracer_provider()
    assert configure_app_telemetry({}) and configure_app_telemetry({})  # function_app.py imported again
    sampler = getattr(provider, "sampler", None)
    assert isinstance(sampler, QuietStorageSampler) and not isinstance(sampler.base, QuietStorageSampler)
    assert trace.get_tracer_provider() is provider
    with caplog.at_level(logging.WARNING):
        configure_app_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"})
    assert "set PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true" in caplog.text
    caplog.clear()
    configure_app_telemetry(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
            "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        }
    )
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in caplog.text
