"""Telemetry as it is deployed: infra's app settings, Microsoft's runtime, the Azure Monitor distro, a real endpoint.

function_app.py runs in a worker process under azure_functions_runtime with exactly the telemetry settings
infra/modules/function-app.bicep deploys (the worker's switches, the sampler, Entra ingestion with the app's
managed identity). The connection string points at a loopback ingestion endpoint (devtools/ingestion.py), which
also answers the App Service identity endpoint, so what arrives there is what Application Insights would get.
Only the export intervals are shortened, and the exporter's calls home are off (they go to fixed Microsoft hosts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from devtools.ingestion import MONITOR_RESOURCE, LoopbackIngestion
from tests.support.deployed import deployed_telemetry_settings
from tests.support.stack import LocalHost, Stack, post_events, wait_until

MIB = 1024 * 1024
CALL = "dddddddd-0000-0000-0000-000000000000"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
STEP_SPANS = {"archive_chunk", "acs.download_metadata", "transfer", "archive.commit", "archive.verify", "acs.delete"}
FAST_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BLRP_SCHEDULE_DELAY": "200",
    "OTEL_METRIC_EXPORT_INTERVAL": "500",
}


@pytest.fixture
async def ingestion() -> AsyncIterator[LoopbackIngestion]:
    endpoint = await LoopbackIngestion().start()
    yield endpoint
    await endpoint.stop()


async def _deployed_host(stack: Stack, ingestion: LoopbackIngestion, sampled: Any) -> LocalHost:
    settings = {**deployed_telemetry_settings(CLIENT_ID), **ingestion.environment(), **FAST_EXPORT}
    return await stack.start_host(settings, in_process=False, sampled=sampled)


async def _archive(
    stack: Stack, local: LocalHost, ingestion: LoopbackIngestion, docs: list[str], spans_of: int = 1
) -> None:
    sim = stack.simulator
    for i, doc in enumerate(docs):
        chunk = sim.add(doc, MIB + i, call_id=CALL)
        status, _ = await post_events(
            local.url, [sim.event(CALL, f"rec{i}", [chunk], event_id=f"evt-{doc}")], stack.env["WEBHOOK_KEY"]
        )
        assert status == 200

    async def exported() -> bool:
        records = ingestion.records()
        archived = {r["attributes"].get("document_id") for r in _logs(records, "recording chunk archived")}
        metered = sum(float(r["value"]) for r in records if r.get("name") == "recording.bytes_archived")
        jobs = [r for r in records if r["record"] == "span" and r["name"] == "archive_chunk"]
        done = set(docs) <= archived and set(docs) <= sim.deleted and metered >= len(docs) * MIB
        return done and len(jobs) >= spans_of

    await wait_until(exported, timeout=120)


def _logs(records: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [r for r in records if r["record"] == "log" and str(r["body"]).startswith(prefix)]


async def test_infra_s_settings_export_spans_metrics_and_log_fields_through_the_real_runtime(
    stack: Stack, ingestion: LoopbackIngestion
) -> None:
    doc = "doc-deployed"
    local = await _deployed_host(stack, ingestion, lambda name: True)
    try:
        await _archive(stack, local, ingestion, [doc])
        worker = local.host.worker
        assert worker is not None
        # The runtime, not an imitation, took the invocations, and told the host it exports itself.
        assert worker.capabilities.get("WorkerOpenTelemetryEnabled") == "true"
        sent = [t.traceparent.split("-") for t in local.host.stats.traces["archive_recording_chunk"]]
    finally:
        await local.stop()
    records = ingestion.records()
    # Entra ingestion as deployed: a token from the app's identity for Azure Monitor on every request.
    assert ingestion.token_requests and all(q.get("client_id") == CLIENT_ID for q in ingestion.token_requests)
    assert all(q.get("resource", "").rstrip("/") == MONITOR_RESOURCE for q in ingestion.token_requests)
    assert set(ingestion.authorizations) == {f"Bearer {ingestion.token}"}
    # Log records with the chunk's identity as custom dimensions, in the invocation's trace.
    [archived] = _logs(records, "recording chunk archived")
    fields = archived["attributes"]
    assert fields["document_id"] == doc and fields["event_id"] == f"evt-{doc}" and fields["call_id"] == CALL
    assert fields["chunk_index"] == "0" and fields["recording_id"] == "rec0"
    # The app's spans under the host's invocation: the job's span is a child of the traceparent the host sent.
    spans = [r for r in records if r["record"] == "span"]
    [root] = [s for s in spans if s["name"] == "archive_chunk"]
    assert [root["trace_id"], root["parent_span_id"]] in [[p[1], p[2]] for p in sent]
    assert archived["trace_id"] == root["trace_id"]
    in_trace = [s for s in spans if s["trace_id"] == root["trace_id"]]
    assert {s["name"] for s in in_trace} >= STEP_SPANS
    assert root["attributes"]["recording.document_id"] == doc
    # Every span of the invocation hangs off another span of it or off the host's invocation: a whole trace.
    ids = {s["span_id"] for s in in_trace} | {root["parent_span_id"]}
    assert all(s["parent_span_id"] in ids for s in in_trace)
    # Metrics: the bytes archived, with the dimensions the workbook groups by.
    points = [r for r in records if r["record"] == "metric" and r["name"] == "recording.bytes_archived"]
    assert sum(float(p["value"]) for p in points) == MIB


async def test_a_trace_is_kept_or_dropped_whole_by_the_hosts_sampled_flag(
    stack: Stack, ingestion: LoopbackIngestion
) -> None:
    """Parent-based sampling: what the host sampled keeps every span; what it did not, none; logs are kept."""
    decisions: list[bool] = []

    def sampled(name: str) -> bool:
        keep = name != "archive_recording_chunk" or len(decisions) % 2 == 0
        if name == "archive_recording_chunk":
            decisions.append(keep)
        return keep

    docs = [f"doc-sampled-{i}" for i in range(4)]
    local = await _deployed_host(stack, ingestion, sampled)
    try:
        await _archive(stack, local, ingestion, docs, spans_of=2)
        await asyncio.sleep(1)  # what a dropped trace would have exported by now
        traces = local.host.stats.traces["archive_recording_chunk"]
    finally:
        await local.stop()
    records = ingestion.records()
    spans = [r for r in records if r["record"] == "span"]
    kept = [t for t in traces if t.traceparent.endswith("-01")]
    dropped = [t for t in traces if t.traceparent.endswith("-00")]
    assert kept and dropped
    for trace in kept:
        trace_id = trace.traceparent.split("-")[1]
        assert {s["name"] for s in spans if s["trace_id"] == trace_id} >= STEP_SPANS
    dropped_ids = {t.traceparent.split("-")[1] for t in dropped}
    assert not [s for s in spans if s["trace_id"] in dropped_ids]
    # Every chunk's log line still arrives, sampled or not.
    assert {r["attributes"]["document_id"] for r in _logs(records, "recording chunk archived")} == set(docs)
