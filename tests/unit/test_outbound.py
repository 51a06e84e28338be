"""Outbound events on in-memory edges: what is published when, with what ids and data; failures kept in the outbox
and delivered again; nothing added to a chunk's storage requests unless publishing fails."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

import pytest

from recording_pipeline.app.worker import Outcome, handle_chunk_message
from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.jobs import encode_job
from recording_pipeline.core.naming import OUTBOX_PREFIX, custody_name, lost_name, outbox_name, quarantine_name
from recording_pipeline.core.outbound import EventType, OutboundEvent, event_id, recording_completed
from recording_pipeline.core.state import Manifest, RecordingState
from tests.support.world import ARCHIVE_URL, CALL, NOW, World, job


def _outbox(world: World) -> list[str]:
    return sorted(n for n in world.state.blobs if n.startswith(OUTBOX_PREFIX))


async def test_an_archived_chunk_that_completes_its_recording_publishes_both_events(world: World) -> None:
    topic = world.publish_events()
    media = world.add()
    assert await handle_chunk_message(encode_job(job()), 1, world.worker) is Outcome.ARCHIVED
    [[archived, completed]] = topic.batches
    assert archived.type is EventType.CHUNK_ARCHIVED and completed.type is EventType.RECORDING_COMPLETED
    stem = job().stem
    assert archived.source == ARCHIVE_URL and archived.subject == world.media_blob()
    assert archived.data["mediaUrl"] == f"{ARCHIVE_URL}/{world.media_blob()}"
    assert archived.data["custodyUrl"] == f"{ARCHIVE_URL}/{custody_name(stem)}"
    assert archived.data["metadataUrl"] == f"{ARCHIVE_URL}/{stem}.metadata.json"
    assert archived.data["size"] == len(media) and archived.data["sha256"] == hashlib.sha256(media).hexdigest()
    assert archived.data["secondsLeftAtArchive"] == 24 * 3600  # the world's clock stands still at the event's time
    assert archived.data["sourceDeletedAt"] == NOW.isoformat() and archived.time == NOW
    identity = {k: archived.data[k] for k in ("callId", "recordingId", "recordingKey", "chunkIndex", "documentId")}
    assert identity == {
        "callId": CALL,
        "recordingId": "rec1",
        "recordingKey": "r-rec1",
        "chunkIndex": 0,
        "documentId": "doc-1",
    }
    assert completed.subject == f"{CALL}/r-rec1/" and completed.data["chunkCount"] == 1
    assert completed.data["chunks"][0]["mediaUrl"] == archived.data["mediaUrl"]
    assert completed.data["size"] == len(media)
    assert _outbox(world) == []


async def test_publishing_adds_no_storage_request_to_a_chunk(world: World) -> None:
    quiet = World()
    quiet.add()
    await handle_chunk_message(encode_job(job()), 1, quiet.worker)
    world.publish_events()
    world.add()
    await handle_chunk_message(encode_job(job()), 1, world.worker)
    assert world.archive.requests == quiet.archive.requests
    assert world.state.requests == quiet.state.requests


async def test_ids_come_from_the_identity_so_a_redelivery_after_a_crash_can_be_deduplicated(world: World) -> None:
    """The chunk was archived, then the process died before publishing: the message comes back."""
    world.add()
    await handle_chunk_message(encode_job(job()), 1, world.worker)  # publishing off: "crashed" before publishing
    topic = world.publish_events()
    assert await handle_chunk_message(encode_job(job()), 2, world.worker) is Outcome.ALREADY_ARCHIVED
    assert await handle_chunk_message(encode_job(job()), 3, world.worker) is Outcome.ALREADY_ARCHIVED
    first, second = topic.batches
    assert [e.id for e in first] == [e.id for e in second]
    assert first[0].id == event_id(EventType.CHUNK_ARCHIVED, CALL, "r-rec1", 0, "doc-1")
    assert first[0].data == second[0].data  # the same event, to the byte: its facts come from the archive
    assert first[0].data["sourceDeletedAt"] == NOW.isoformat()


async def test_a_chunk_of_an_unfinished_recording_publishes_no_completion(world: World) -> None:
    topic = world.publish_events()
    world.add("doc-1")
    await handle_chunk_message(encode_job(job("doc-1", 0, last=False)), 1, world.worker)
    assert [e.type for e in topic.events] == [EventType.CHUNK_ARCHIVED]
    world.add("doc-2")
    await handle_chunk_message(encode_job(job("doc-2", 1)), 1, world.worker)
    assert [e.type for e in topic.events][1:] == [EventType.CHUNK_ARCHIVED, EventType.RECORDING_COMPLETED]
    completed = topic.events[-1]
    assert [c["documentId"] for c in completed.data["chunks"]] == ["doc-1", "doc-2"]


async def test_a_lost_chunk_publishes_chunk_lost(world: World) -> None:
    topic = world.publish_events()
    assert await handle_chunk_message(encode_job(job()), 1, world.worker) is Outcome.LOST
    [lost] = topic.events
    assert lost.type is EventType.CHUNK_LOST and lost.subject == lost_name(job().stem)
    assert lost.data["lostUrl"] == f"{ARCHIVE_URL}/{lost_name(job().stem)}" and "404" in lost.data["reason"]


async def test_a_quarantined_chunk_publishes_chunk_failed(world: World) -> None:
    topic = world.publish_events()
    world.add()
    world.acs.fail_next_metadata = 100
    world.worker.clock = lambda: NOW + timedelta(hours=23, minutes=45)
    assert await handle_chunk_message(encode_job(job()), 4, world.worker) is None
    [failed] = topic.events
    assert failed.type is EventType.CHUNK_FAILED and failed.data["attempts"] == 4
    assert failed.data["quarantineBlob"] == quarantine_name(job().stem)
    assert failed.data["poisonQueue"] == "recording-chunks-poison" and "AcsTransientError" in failed.data["error"]


async def test_an_undelivered_event_is_kept_in_the_state_container_and_delivered_again(world: World) -> None:
    topic = world.publish_events()
    topic.fail_next = 1
    world.add()
    archive_before = dict(world.archive.requests)
    assert await handle_chunk_message(encode_job(job()), 1, world.worker) is Outcome.ARCHIVED
    [refused] = topic.refused
    assert _outbox(world) == sorted(outbox_name(e.id) for e in refused)
    assert all(n not in world.archive.blobs for n in _outbox(world))  # never in the write-once archive
    assert world.archive.changed == [] and archive_before != world.archive.requests
    assert world.worker.events is not None
    assert await world.worker.events.redeliver() == 2
    assert sorted(topic.events, key=lambda e: e.id) == sorted(refused, key=lambda e: e.id)  # unchanged, any order
    assert _outbox(world) == []
    assert await world.worker.events.redeliver() == 0


async def test_redelivery_that_fails_again_keeps_everything(world: World) -> None:
    topic = world.publish_events()
    topic.fail_next = 2
    world.add()
    await handle_chunk_message(encode_job(job()), 1, world.worker)
    kept = _outbox(world)
    assert world.worker.events is not None
    assert await world.worker.events.redeliver() == 0
    assert _outbox(world) == kept and topic.events == []


async def test_an_outbox_blob_that_is_not_an_event_is_left_and_named(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.publish_events()
    await world.state.create(outbox_name("0" * 32), b"{not json", "application/json")
    assert world.worker.events is not None
    with caplog.at_level(logging.ERROR):
        assert await world.worker.events.redeliver() == 0
    assert outbox_name("0" * 32) in world.state.blobs and "is not an outbound event" in caplog.text


async def test_when_events_can_be_neither_published_nor_kept_the_job_comes_back_to_publish(world: World) -> None:
    topic = world.publish_events()
    topic.fail_next = 1
    world.add()

    create = world.state.create

    async def refuse_the_outbox(name: str, data: bytes, content_type: str, metadata: object = None) -> bool:
        if name.startswith(OUTBOX_PREFIX):
            raise OSError("the state container is unreachable")
        return await create(name, data, content_type)

    world.state.create = refuse_the_outbox  # type: ignore[method-assign]
    assert await handle_chunk_message(encode_job(job()), 1, world.worker) is Outcome.ARCHIVED
    [(text, delay)] = world.queue.messages
    assert json.loads(text)["document_id"] == "doc-1" and delay == 300
    assert topic.events == []
    # The copy comes back: ACS answers 404 (its file was deleted), the archive holds the proved copy, and both
    # events go out as the first attempt would have sent them.
    world.state.create = create  # type: ignore[method-assign]
    assert await handle_chunk_message(text, 1, world.worker) is Outcome.ALREADY_ARCHIVED
    archived, completed = topic.events
    assert archived.type is EventType.CHUNK_ARCHIVED and archived.data["mediaBlob"] == world.media_blob()
    assert archived.data["sourceDeletedAt"] == NOW.isoformat()
    assert completed.type is EventType.RECORDING_COMPLETED and completed.data["chunkCount"] == 1
    assert _outbox(world) == []


def test_an_event_survives_the_outbox_unchanged() -> None:
    event = OutboundEvent(
        event_id(EventType.CHUNK_LOST, "c", "r", 1, "d"), EventType.CHUNK_LOST, ARCHIVE_URL, "s", NOW, {"a": [1]}
    )
    assert OutboundEvent.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b"{}", json.dumps({"id": "x", "type": "Other", "source": "s", "subject": "s", "time": "t"}).encode()],
)
def test_what_is_not_a_kept_event_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidEventError, match="not an outbound event"):
        OutboundEvent.from_json(body)


@pytest.mark.parametrize("bad", ["", "../x", "A" * 32, "0" * 31, "0" * 33, "g" * 32])
def test_outbox_names_take_only_event_ids(bad: str) -> None:
    with pytest.raises(InvalidEventError):
        outbox_name(bad)


def test_an_incomplete_recording_has_no_completion_event() -> None:
    manifest = Manifest(call_id=CALL, recording_key="r-rec1", state=RecordingState.INCOMPLETE)
    with pytest.raises(InvalidEventError, match="not complete"):
        recording_completed(manifest, ARCHIVE_URL)
