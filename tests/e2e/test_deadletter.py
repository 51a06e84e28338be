"""Nothing refused in silence, on Azurite through function_app.py under the local host: the deadletter_redrive
timer (every 5 minutes in Azure; invoked here as the host's scheduler and its admin API invoke it) redrives what
Event Grid dead-lettered through the webhook's path until the chunks are archived, records what became of each blob
beside it, and never tries a refused one again; and the two alerts of infra/modules/alerts.bicep, on a refused
event and on a dead-lettered one, query log lines and a metric the app really exports."""

from __future__ import annotations

import json
import re
from typing import Any

from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from devtools.ncrontab import Schedule
from recording_pipeline.app.deadletter import REDRIVEN_SUFFIX
from recording_pipeline.functions_adapter import DEADLETTER_SCHEDULE
from tests.infra.test_infra_templates import bicep, body, resources
from tests.support.stack import Stack, post_events, wait_until
from tests.support.telemetry import Captured

CALL = "dededede-0000-0000-0000-000000000000"
TOPIC_PATH = "EVGT-ACS-SIM/RECORDING-FILE-STATUS-UPDATED/2026/12/06/09"
DEAD_LETTER_FIELDS = {
    "deadLetterReason": "MaxDeliveryAttemptsExceeded",
    "deliveryAttempts": 30,
    "lastDeliveryOutcome": "Probation",
    "lastHttpStatusCode": 503,
    "publishTime": "2026-12-06T09:00:00Z",
}


def _dead_lettered(event: dict[str, Any], **fields: Any) -> bytes:
    """What Event Grid writes: a JSON array of the events it gave up on, each with its own fields added."""
    return json.dumps([{**event, **DEAD_LETTER_FIELDS, **fields}]).encode()


async def _container(blob_service: BlobServiceClient, stack: Stack) -> ContainerClient:
    container = blob_service.get_container_client(stack.env["DEADLETTER_CONTAINER"])
    if not await container.exists():
        await container.create_container()
    return container


async def _read(container: ContainerClient, name: str) -> dict[str, Any]:
    return dict(json.loads(await (await container.get_blob_client(name).download_blob()).readall()))


async def _names(container: ContainerClient) -> list[str]:
    return [n async for n in container.list_blob_names()]


async def test_the_timer_redrives_dead_letters_until_archived_and_never_tries_a_refused_one_again(
    stack: Stack, blob_service: BlobServiceClient
) -> None:
    sim = stack.simulator
    chunks = [sim.add(f"doc-dl-{i}", 1024 * (i + 1), call_id=CALL, chunk_index=i) for i in range(2)]
    good, bad = f"{TOPIC_PATH}/0b1e.json", f"{TOPIC_PATH}/0b2e.json"
    refused = {**sim.event(CALL, "recDL", chunks[:1], event_id="evt-refused"), "subject": "/recording/call/no$pe"}
    container = await _container(blob_service, stack)
    await container.upload_blob(good, _dead_lettered(sim.event(CALL, "recDL", chunks, event_id="evt-dl")))
    await container.upload_blob(bad, _dead_lettered(refused, lastHttpStatusCode=400, deadLetterReason="Bad"))

    local = await stack.local_host(in_process=True)
    try:
        # The host schedules it every 5 minutes, 15 s past the minute; here it runs now, as the scheduler runs it.
        [timer] = [f for f in local.host.functions("timerTrigger") if f.name == "deadletter_redrive"]
        assert timer.schedule == DEADLETTER_SCHEDULE and Schedule.parse(DEADLETTER_SCHEDULE)
        assert await local.host.run_timer("deadletter_redrive")

        async def archived() -> bool:
            return {c.document_id for c in chunks} <= sim.deleted

        await wait_until(archived, timeout=90)
        served = len(sim.requests)
        assert await local.host.run_timer("deadletter_redrive")  # nothing is redriven twice
        assert len(sim.requests) == served and await stack.queued_jobs() == []
    finally:
        await local.stop()
    assert sorted(await _names(container)) == sorted([good, bad, f"{good}{REDRIVEN_SUFFIX}", f"{bad}{REDRIVEN_SUFFIX}"])
    done = await _read(container, f"{good}{REDRIVEN_SUFFIX}")
    assert (done["status"], done["enqueued"], done["by"], done["try"]) == (200, 2, "schedule", 1)
    again = await _read(container, f"{bad}{REDRIVEN_SUFFIX}")
    [reason] = again["rejected"]
    assert again["status"] == 400 and "callId has characters outside" in reason
    archive = blob_service.get_container_client(stack.container)
    [kept] = [n async for n in archive.list_blob_names(name_starts_with="_rejected/")]
    assert (await _read(archive, kept))["event"]["id"] == "evt-refused"
    # Event Grid's blobs are as it wrote them (the session's write-once guard watches every request to dl- too).
    assert json.loads(await (await container.get_blob_client(good).download_blob()).readall())[0]["id"] == "evt-dl"


async def test_a_dead_letter_container_that_does_not_exist_holds_nothing_to_redrive(
    stack: Stack, blob_service: BlobServiceClient, telemetry: Captured
) -> None:
    """Nothing was ever dead-lettered (Azurite, or before Event Grid's first): the timer succeeds and says 0."""
    local = await stack.local_host(in_process=True)
    try:
        assert await local.host.run_timer("deadletter_redrive")
    finally:
        await local.stop()
    assert not await blob_service.get_container_client(stack.env["DEADLETTER_CONTAINER"]).exists()
    assert _waiting(telemetry.metric_points(), stack) == [0]


def _alert_queries() -> dict[str, str]:
    doc = bicep("alerts.bicep")
    return {
        name: criterion["query"]
        for name, rule in resources(doc, "Microsoft.Insights/scheduledQueryRules").items()
        for criterion in body(rule)["properties"]["criteria"]["allOf"]
    }


def _waiting(metrics: dict[str, list[Any]], stack: Stack) -> list[Any]:
    """The gauge's points for this test's container (the in-memory reader keeps other tests' containers too)."""
    ours = {"container": stack.env["DEADLETTER_CONTAINER"]}
    return [p.value for p in metrics.get("recording.deadletter.waiting", []) if dict(p.attributes) == ours]


def _alerted(query: str, logs: list[str], metrics: dict[str, list[Any]]) -> list[str]:
    """What of ``query`` the run's exported records satisfy: each log prefix, each metric above 0."""
    found = [p for p in re.findall(r'message startswith "([^"]+)"', query) if any(m.startswith(p) for m in logs)]
    for name in re.findall(r'name == "([^"]+)" and value > 0', query):
        if any(point.value > 0 for point in metrics.get(name, [])):
            found.append(name)  # the caller reads the metrics while only its own container's gauge is above 0
    return found


async def test_the_refused_and_dead_letter_alerts_query_what_the_app_exports(
    stack: Stack, blob_service: BlobServiceClient, telemetry: Captured
) -> None:
    queries = _alert_queries()
    refused_query, deadletter_query = queries["refusedEventAlert"], queries["deadLetterAlert"]
    sim = stack.simulator
    chunk = sim.add("doc-alert", 2048, call_id=CALL)
    container = await _container(blob_service, stack)
    await container.upload_blob(f"{TOPIC_PATH}/0a1e.json", _dead_lettered(sim.event(CALL, "recA", [chunk])))

    # Scheduled redrive off: the timer only counts what waits, and the gauge says so.
    local = await stack.local_host(in_process=True, DEADLETTER_REDRIVE_ON_SCHEDULE="false", WEBHOOK_MAX_EVENTS="2")
    try:
        key = stack.env["WEBHOOK_KEY"]
        bad = {**sim.event(CALL, "recB", [chunk]), "subject": "/recording/call/no$pe"}
        assert (await post_events(local.url, [bad], key))[0] == 400  # a refused recording event
        assert (await post_events(local.url, None, key, raw=b"<html>"))[0] == 400  # a body that is no event
        assert (await post_events(local.url, [bad, bad, bad], key))[0] == 413  # over the limits
        assert await local.host.run_timer("deadletter_redrive")
        metrics = telemetry.metric_points()  # a gauge keeps its last value: read it while it says 1
        assert _waiting(metrics, stack) == [1]
    finally:
        await local.stop()
    local = await stack.local_host(in_process=True)
    try:
        assert await local.host.run_timer("deadletter_redrive")
        await wait_until(lambda: _true(chunk.document_id in sim.deleted), timeout=60)
    finally:
        await local.stop()

    logs = [str(r.log_record.body) for r in telemetry.logs]
    refused_parts = re.findall(r'message startswith "([^"]+)"', refused_query)
    assert refused_parts == ["rejected event", "rejected delivery"]
    assert _alerted(refused_query, logs, {}) == refused_parts
    assert sum(m.startswith("rejected delivery") for m in logs) == 2  # not JSON, and 413
    assert re.findall(r"\b(traces|customMetrics)\b", deadletter_query) == ["traces", "customMetrics"]
    assert _waiting(telemetry.metric_points(), stack) == [0]  # all redriven
    assert _alerted(deadletter_query, logs, metrics) == [
        "dead-lettered event found",
        "recording.deadletter.waiting",
    ]
    [found] = [r.log_record for r in telemetry.logs if str(r.log_record.body).startswith("dead-lettered event found")]
    assert dict(found.attributes or {})["deadletter_reason"] == "MaxDeliveryAttemptsExceeded, last HTTP status 503"


async def _true(value: bool) -> bool:
    return value
