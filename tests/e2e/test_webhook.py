"""The webhook: handshakes, schemas, auth, limits and partial failure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.simulator import to_cloudevent
from recording_pipeline.core.custody import ExternalRecord
from recording_pipeline.core.naming import day_entry
from recording_pipeline.runtime import Runtime
from tests.support.stack import Stack, deliver, post_events

CALL = "aaaaaaaa-0000-0000-0000-000000000001"
TOPIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/acs-sim"


def _event(stack: Stack, call: str = CALL, chunks: int = 1, **overrides: Any) -> dict[str, Any]:
    sim = stack.simulator
    recs = [sim.add(f"doc-{call[-4:]}-{i}", 1024, chunk_index=i) for i in range(chunks)]
    event = sim.event(call, "rec1", recs, topic=TOPIC)
    event.update(overrides)
    return event


async def test_subscription_validation_handshake(runtime: Runtime) -> None:
    status, body, _ = await deliver(
        runtime,
        [
            {
                "id": "v1",
                "topic": TOPIC,
                "subject": "",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "eventTime": "2026-11-23T10:00:00Z",
                "dataVersion": "1",
                "data": {
                    "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                    "validationUrl": "https://rp-eastus2.eventgrid.azure.net/x",
                },
            }
        ],
    )
    assert (status, body) == (200, {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})


async def test_a_validation_event_inside_a_batch_does_not_swallow_it(stack: Stack, runtime: Runtime) -> None:
    validation = {
        "id": "v2",
        "topic": TOPIC,
        "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-11-23T10:00:00Z",
        "dataVersion": "1",
        "data": {"validationCode": "abc"},
    }
    status, body, _ = await deliver(runtime, [_event(stack, chunks=2), validation])
    assert status == 200 and body["enqueued"] == 2 and "delivered alone" in body["rejected"][0]
    assert "validationResponse" not in body


async def test_cloudevents_abuse_protection(runtime: Runtime) -> None:
    status, _, headers = await deliver(
        runtime, b"", method="OPTIONS", headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert status == 200
    assert headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert headers["WebHook-Allowed-Rate"]
    status, body, _ = await deliver(runtime, b"", method="OPTIONS")
    assert status == 400 and "WebHook-Request-Origin" in body["error"]


async def test_one_job_per_chunk_in_both_schemas(stack: Stack, runtime: Runtime) -> None:
    grid = _event(stack, chunks=3)
    status, body, _ = await deliver(runtime, [grid])
    assert (status, body["enqueued"]) == (200, 3)
    other = _event(stack, call="aaaaaaaa-0000-0000-0000-000000000002", chunks=2)
    status, body, _ = await deliver(runtime, to_cloudevent(other), "application/cloudevents+json")
    assert (status, body["enqueued"]) == (200, 2)
    third = _event(stack, call="aaaaaaaa-0000-0000-0000-000000000003", chunks=1)
    status, body, _ = await deliver(runtime, [to_cloudevent(third)], "application/cloudevents-batch+json")
    assert (status, body["enqueued"]) == (200, 1)
    jobs = await stack.queued_jobs()
    assert sorted((j.call_id, j.chunk_index) for j in jobs) == sorted(
        [(CALL, i) for i in range(3)]
        + [("aaaaaaaa-0000-0000-0000-000000000002", i) for i in range(2)]
        + [("aaaaaaaa-0000-0000-0000-000000000003", 0)]
    )


async def test_other_event_types_are_acknowledged_and_ignored(stack: Stack, runtime: Runtime) -> None:
    event = _event(stack, eventType="Microsoft.Communication.CallStarted")
    status, body, _ = await deliver(runtime, [event])
    assert (status, body["ignored"], body["enqueued"]) == (200, 1, 0)
    assert await stack.queued_jobs() == []


@pytest.mark.parametrize(
    ("raw", "needle"),
    [(b"not json", "not JSON"), (b"[]", "empty"), (b"[1, 2]", "event object"), (b'"text"', "event object")],
)
async def test_body_that_is_not_an_event_array_is_400(stack: Stack, runtime: Runtime, raw: bytes, needle: str) -> None:
    status, body, _ = await deliver(runtime, raw)
    assert status == 400 and needle in body["error"]
    assert await stack.queued_jobs() == []


async def test_batch_with_bad_events_keeps_them_and_processes_the_good(
    stack: Stack, runtime: Runtime, blob_service: BlobServiceClient
) -> None:
    good = _event(stack, chunks=2)
    no_chunks = _event(stack, call="aaaaaaaa-0000-0000-0000-000000000009")
    no_chunks["data"]["recordingStorageInfo"]["recordingChunks"] = []
    traversal = _event(stack, call="aaaaaaaa-0000-0000-0000-000000000008")
    traversal["subject"] = "/recording/call/../../etc/serverCallId/x"
    status, body, _ = await deliver(runtime, [good, no_chunks, traversal])
    assert status == 200
    assert body["enqueued"] == 2 and len(body["rejected"]) == 2
    container = blob_service.get_container_client(stack.container)
    kept = [n async for n in container.list_blob_names(name_starts_with="_rejected/")]
    assert len(kept) == 2
    records = [json.loads(await (await container.get_blob_client(n).download_blob()).readall()) for n in kept]
    assert {r["event"]["id"] for r in records} == {no_chunks["id"], traversal["id"]}
    assert all(r["reason"] for r in records)


async def test_batch_where_every_event_is_bad_is_400_and_kept(
    stack: Stack, runtime: Runtime, blob_service: BlobServiceClient
) -> None:
    bad = _event(stack)
    bad["data"] = {"recordingStorageInfo": {}}
    status, body, _ = await deliver(runtime, [bad])
    assert status == 400 and "recordingChunks" in body["rejected"][0]
    container = blob_service.get_container_client(stack.container)
    assert len([n async for n in container.list_blob_names(name_starts_with="_rejected/")]) == 1


async def test_events_from_another_acs_resource_are_rejected(stack: Stack) -> None:
    runtime = await stack.runtime(ACS_RESOURCE_ID=TOPIC.replace("acs-sim", "acs-mine"))
    try:
        status, body, _ = await deliver(runtime, [_event(stack)])
        assert status == 400 and "another ACS resource" in body["rejected"][0]
        ours = _event(stack, call="aaaaaaaa-0000-0000-0000-000000000004", topic=TOPIC.replace("acs-sim", "ACS-MINE"))
        status, body, _ = await deliver(runtime, [ours])
        assert (status, body["enqueued"]) == (200, 1)
    finally:
        await runtime.close()


async def test_limits_on_body_size_and_event_count(stack: Stack) -> None:
    runtime = await stack.runtime(WEBHOOK_MAX_EVENTS="2", WEBHOOK_MAX_BODY_BYTES="20000")
    try:
        status, body, _ = await deliver(runtime, [_event(stack)] * 3)
        assert status == 413 and "more than 2 events" in body["error"]
        status, body, _ = await deliver(runtime, b"[" + b" " * 20001 + b"]")
        assert status == 413
        assert await stack.queued_jobs() == []
    finally:
        await runtime.close()


async def test_queue_failure_is_503_so_event_grid_retries(stack: Stack, runtime: Runtime) -> None:
    async with stack.raw_queue() as queue:
        await queue.delete_queue()
    status, body, _ = await deliver(runtime, [_event(stack)])
    assert status == 503 and "retry" in body["error"]


async def test_bring_your_own_storage_is_recorded_not_copied(
    stack: Stack, runtime: Runtime, blob_service: BlobServiceClient
) -> None:
    event = _event(stack)
    event["data"]["storageType"] = "blobstorage"
    status, body, _ = await deliver(runtime, [event])
    assert (status, body["enqueued"], body["external"]) == (200, 0, 1)
    container = blob_service.get_container_client(stack.container)
    names = [n async for n in container.list_blob_names()]
    external = f"{CALL}/r-rec1/external.json"
    record = ExternalRecord.model_validate_json(
        await (await container.get_blob_client(external).download_blob()).readall()
    )
    assert (record.call_id, record.recording_key, record.event_id) == (CALL, "r-rec1", event["id"])
    # The evidence, written once, and the recording filed under the day it was received (it has no start time).
    assert sorted(names) == sorted([external, day_entry(record.received_at.date(), CALL, "r-rec1")])
    manifest = await stack.manifest(CALL, "r-rec1")
    assert manifest is not None and manifest["state"] == "external"


async def test_the_local_host_demands_the_function_key(stack: Stack, serve_factory: Any) -> None:
    serve = serve_factory(stack.env)
    event = _event(stack)
    for key in (None, "wrong-key"):
        status, body = await post_events(serve.url, [event], key)
        assert status == 401, body
    assert await stack.queued_jobs() == []
    status, body = await post_events(serve.url + f"?code={stack.env['WEBHOOK_KEY']}", [event], None)
    assert (status, body["enqueued"]) == (200, 1)


def test_the_local_host_refuses_to_start_without_a_key(stack: Stack) -> None:
    import subprocess
    import sys

    from devtools.devstack import REPO

    env = {k: v for k, v in stack.env.items() if k != "WEBHOOK_KEY"}
    import os

    done = subprocess.run(
        [sys.executable, "-m", "devtools.local_host", "--port", "0"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "WEBHOOK_KEY" in done.stderr
