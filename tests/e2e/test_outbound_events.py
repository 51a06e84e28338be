"""Outbound events through function_app.py under the local host, to a real loopback topic: what arrives, what is
kept in the state container when the topic fails, and the timer that delivers it again; the poison-depth timer."""

from __future__ import annotations

import hashlib
from typing import Any

from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueClient

from recording_pipeline.core.naming import OUTBOX_PREFIX
from recording_pipeline.edges.event_publisher import RETRIES
from tests.support.event_receiver import EventReceiver
from tests.support.stack import LocalHost, Stack, post_events, wait_until
from tests.support.telemetry import Captured

MIB = 1024 * 1024
CALL = "eeeeeeee-0000-0000-0000-000000000000"


async def _host(stack: Stack, topic: EventReceiver) -> LocalHost:
    return await stack.local_host(
        in_process=True, OUTBOUND_EVENTS_TOPIC_ENDPOINT=topic.endpoint, OUTBOUND_EVENTS_TOPIC_KEY=topic.key
    )


async def _archive(stack: Stack, local: LocalHost, docs: list[str], sizes: list[int]) -> list[Any]:
    sim = stack.simulator
    chunks = [
        sim.add(d, size, call_id=CALL, chunk_index=i) for i, (d, size) in enumerate(zip(docs, sizes, strict=True))
    ]
    status, _ = await post_events(local.url, [sim.event(CALL, "recE", chunks)], stack.env["WEBHOOK_KEY"])
    assert status == 200

    async def deleted() -> bool:
        return all(d in sim.deleted for d in docs)

    await wait_until(deleted, timeout=120)
    return chunks


async def _outbox(blob_service: BlobServiceClient, stack: Stack) -> list[str]:
    state = blob_service.get_container_client(stack.state_container)
    return [n async for n in state.list_blob_names(name_starts_with=OUTBOX_PREFIX)]


async def test_each_archived_chunk_and_the_completed_recording_reach_the_topic(
    stack: Stack, topic: EventReceiver, blob_service: BlobServiceClient
) -> None:
    local = await _host(stack, topic)
    try:
        chunks = await _archive(stack, local, ["doc-e0", "doc-e1"], [MIB + 5, 2 * MIB])

        async def completed() -> bool:
            return any(e["type"] == "RecordingArchive.RecordingCompleted" for e in topic.delivered())

        await wait_until(completed, timeout=30)
    finally:
        await local.stop()
    events = topic.delivered()
    archived = {e["data"]["documentId"]: e for e in events if e["type"] == "RecordingArchive.ChunkArchived"}
    assert set(archived) == {"doc-e0", "doc-e1"}
    container = blob_service.get_container_client(stack.container)
    for chunk in chunks:
        data = archived[chunk.document_id]["data"]
        name = archived[chunk.document_id]["subject"]
        assert archived[chunk.document_id]["source"] == container.url and data["mediaUrl"] == f"{container.url}/{name}"
        body = await (await container.get_blob_client(name).download_blob()).readall()
        assert hashlib.sha256(body).hexdigest() == data["sha256"] == chunk.sha256 and data["size"] == chunk.size
        assert 0 < data["secondsLeftAtArchive"] <= 24 * 3600 and data["sourceDeletedAt"]
    [done] = {e["id"]: e for e in events if e["type"] == "RecordingArchive.RecordingCompleted"}.values()
    assert [c["documentId"] for c in done["data"]["chunks"]] == ["doc-e0", "doc-e1"]
    assert await _outbox(blob_service, stack) == []


async def test_what_the_topic_refuses_is_kept_in_the_state_container_and_redelivered_by_the_timer(
    stack: Stack, topic: EventReceiver, blob_service: BlobServiceClient
) -> None:
    topic.fail_next = [500] * (RETRIES + 1)  # the client's retries all fail: one chunk's events are refused
    local = await _host(stack, topic)
    try:
        await _archive(stack, local, ["doc-r0"], [MIB])

        def refused_ids() -> set[str]:
            return {e["id"] for r in topic.requests for e in r.events()}

        async def all_kept() -> set[str] | None:
            # The refused events are written to the outbox one by one: wait for every one of them.
            waiting = {n.removeprefix(OUTBOX_PREFIX).removesuffix(".json") for n in await _outbox(blob_service, stack)}
            return waiting if waiting and waiting == refused_ids() else None

        await wait_until(all_kept, timeout=30)
        assert topic.delivered() == []
        refused = refused_ids()
        assert await local.host.run_timer("outbound_redelivery")
    finally:
        await local.stop()
    assert {e["id"] for e in topic.delivered()} == refused
    assert await _outbox(blob_service, stack) == []
    # The archive container was only ever added to (the session's write-once guard checks every request).


async def test_the_poison_queue_depth_is_a_gauge_reported_by_its_timer(stack: Stack, telemetry: Captured) -> None:
    local = await stack.local_host(in_process=True)
    try:
        poison = QueueClient.from_connection_string(stack.azurite.connection_string, f"{stack.queue}-poison")
        async with poison:
            await poison.create_queue()
            for body in ("one", "two", "three"):
                await poison.send_message(body)
        assert await local.host.run_timer("poison_depth")
    finally:
        await local.stop()
    [line] = [r.log_record for r in telemetry.logs if str(r.log_record.body).startswith("poison queue depth")]
    assert dict(line.attributes or {})["poison_depth"] == 3
    # The in-memory reader keeps every queue's gauge of the session: another test's host may have run its own
    # poison_depth on the schedule (every 5 minutes) while it ran. This queue's gauge is the one point for it.
    ours = {"queue": f"{stack.queue}-poison"}
    points = [p for p in telemetry.metric_points()["recording.poison_queue.depth"] if dict(p.attributes) == ours]
    assert [p.value for p in points] == [3]
