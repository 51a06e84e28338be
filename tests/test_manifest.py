"""The recording manifest: chunk states only move up, and a recording is complete only when provably whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from recording_pipeline.jobs import RecordingChunk
from recording_pipeline.manifest import (
    chunk_key,
    external_manifest,
    new_manifest,
    record_chunk,
    recording_state,
)

CALL = "3f1c8f6e-52f4-4a55-9f0e-8a7c2d1b4e90"
REC = "eyJyZWNvcmRpbmciOiIxIn0"
EVENT_TIME = datetime(2024, 5, 14, 10, 33, 2, tzinfo=UTC)
NOW = datetime(2024, 5, 14, 10, 40, tzinfo=UTC)


def job(
    index: int, end_reason: str | None = "ChunkMaximumSizeExceeded", event_time: datetime = EVENT_TIME
) -> RecordingChunk:
    doc = f"0-eus-d12-{index:032x}"
    return RecordingChunk(
        event_id=f"evt-{index}",
        topic="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/acs",
        event_time=event_time,
        expires_at=event_time + timedelta(hours=24),
        call_id=CALL,
        recording_id=REC,
        recording_key=f"r-{REC}",
        recording_start_time=datetime(2024, 5, 14, 9, tzinfo=UTC),
        chunk_index=index,
        document_id=doc,
        end_reason=end_reason,
        content_url=f"https://storage.asm.skype.com/v1/objects/{doc}/content/video",
        metadata_url=f"https://storage.asm.skype.com/v1/objects/{doc}/content/acsmetadata",
        delete_url=f"https://us-storage.asm.skype.com/v1/objects/{doc}",
    )


def last(index: int) -> RecordingChunk:
    return job(index, "SessionEnded")


def apply(steps: list[tuple[RecordingChunk, str]], manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = manifest
    for step, (chunk_job, state) in enumerate(steps):
        doc = record_chunk(doc, chunk_job, NOW + timedelta(seconds=step), state)
    assert doc is not None
    return doc


def test_new_manifest_describes_the_recording() -> None:
    doc = new_manifest(job(0), NOW)
    assert doc["callId"] == CALL
    assert doc["recordingId"] == REC
    assert doc["recordingKey"] == f"r-{REC}"
    assert doc["serverCallId"] is None
    assert doc["recordingStartTime"] == "2024-05-14T09:00:00+00:00"
    assert doc["expiresAt"] == "2024-05-15T10:33:02+00:00"
    assert doc["state"] == "incomplete"
    assert doc["lastChunkIndex"] is None
    assert doc["chunks"] == {}
    assert doc["createdAt"] == doc["updatedAt"] == NOW.isoformat()


def test_record_chunk_creates_the_manifest_and_chunk_entry() -> None:
    doc = record_chunk(None, job(3), NOW, "archived", size=1234, sha256="ab" * 32, error=None)
    entry = doc["chunks"][chunk_key(3)]
    assert chunk_key(3) == "00003"
    assert entry["index"] == 3
    assert entry["documentId"] == job(3).document_id
    assert entry["state"] == "archived"
    assert (entry["size"], entry["sha256"]) == (1234, "ab" * 32)
    assert "error" not in entry
    assert entry["firstSeenAt"] == NOW.isoformat()


@pytest.mark.parametrize("late", ["pending", "failed", "lost"])
def test_archived_chunk_is_never_lowered_by_a_late_update(late: str) -> None:
    doc = record_chunk(None, last(0), NOW, "archived", sha256="cd" * 32, size=10)
    doc = record_chunk(doc, last(0), NOW + timedelta(minutes=5), late, error="late duplicate", sha256="00" * 32)
    entry = doc["chunks"]["00000"]
    assert entry["state"] == "archived"
    assert entry["sha256"] == "cd" * 32
    assert "error" not in entry
    assert doc["state"] == "complete"
    assert doc["updatedAt"] == (NOW + timedelta(minutes=5)).isoformat()


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [
        ("pending", "failed", "failed"),
        ("failed", "pending", "failed"),
        ("failed", "archived", "archived"),
        ("lost", "failed", "lost"),
        ("pending", "archived", "archived"),
        ("lost", "archived", "archived"),
    ],
)
def test_chunk_state_only_moves_up(first: str, then: str, expected: str) -> None:
    doc = apply([(job(0), first), (job(0), then)])
    assert doc["chunks"]["00000"]["state"] == expected


def test_complete_only_when_every_chunk_up_to_the_last_is_archived() -> None:
    doc = apply([(job(0), "archived"), (job(1), "archived")])
    assert doc["lastChunkIndex"] is None
    assert doc["state"] == "incomplete"  # no SessionEnded chunk yet: more may follow

    doc = apply([(last(2), "pending")], doc)
    assert doc["lastChunkIndex"] == 2
    assert doc["state"] == "incomplete"

    doc = apply([(last(2), "archived")], doc)
    assert doc["state"] == "complete"


def test_single_chunk_recording_completes() -> None:
    assert apply([(last(0), "archived")])["state"] == "complete"


def test_gap_before_the_last_chunk_keeps_it_incomplete() -> None:
    doc = apply([(job(0), "archived"), (last(2), "archived")])
    assert doc["lastChunkIndex"] == 2
    assert doc["state"] == "incomplete"
    assert recording_state(doc) == "incomplete"


def test_failed_chunk_keeps_it_incomplete() -> None:
    doc = apply([(job(0), "failed"), (last(1), "archived")])
    assert doc["state"] == "incomplete"


@pytest.mark.parametrize("lost_index", [0, 1, 2])
def test_any_lost_chunk_makes_the_recording_lost(lost_index: int) -> None:
    steps = [(job(i) if i < 2 else last(i), "lost" if i == lost_index else "archived") for i in range(3)]
    doc = apply(steps)
    assert doc["state"] == "lost"


def test_lost_wins_even_without_a_known_last_chunk() -> None:
    assert apply([(job(0), "archived"), (job(1), "lost")])["state"] == "lost"


def test_chunks_arriving_out_of_order_end_complete() -> None:
    states = []
    doc: dict[str, Any] | None = None
    for index in (2, 0, 1):
        doc = record_chunk(doc, last(2) if index == 2 else job(index), NOW, "archived")
        states.append(doc["state"])
    assert states == ["incomplete", "incomplete", "complete"]
    assert doc is not None
    assert sorted(doc["chunks"]) == ["00000", "00001", "00002"]
    assert doc["lastChunkIndex"] == 2


def test_duplicate_deliveries_converge() -> None:
    once = apply([(job(0), "archived"), (last(1), "archived")])
    twice = apply([(job(0), "archived"), (last(1), "archived"), (job(0), "pending"), (last(1), "archived")])
    assert once["chunks"].keys() == twice["chunks"].keys()
    assert [c["state"] for c in twice["chunks"].values()] == ["archived", "archived"]
    assert twice["state"] == once["state"] == "complete"


def test_recording_state_of_a_hand_built_document() -> None:
    chunks = {chunk_key(i): {"state": "archived"} for i in range(3)}
    assert recording_state({"lastChunkIndex": 2, "chunks": chunks}) == "complete"
    assert recording_state({"lastChunkIndex": 3, "chunks": chunks}) == "incomplete"
    assert recording_state({"lastChunkIndex": None, "chunks": chunks}) == "incomplete"
    assert recording_state({"lastChunkIndex": 0, "chunks": {}}) == "incomplete"
    assert recording_state({"storageType": "blobstorage", "chunks": chunks}) == "external"


def test_external_manifest() -> None:
    identity = {"callId": CALL, "recordingId": REC, "recordingKey": f"r-{REC}"}
    doc = external_manifest(identity, NOW)
    assert doc["state"] == "external"
    assert doc["storageType"] == "blobstorage"
    assert doc["callId"] == CALL
    assert recording_state(doc) == "external"


def test_expires_at_is_the_earliest_deadline_of_any_chunk() -> None:
    doc = apply([(job(0, event_time=EVENT_TIME + timedelta(hours=1)), "pending"), (job(1), "pending")])
    assert doc["expiresAt"] == (EVENT_TIME + timedelta(hours=24)).isoformat()


def test_expires_at_compares_instants_not_strings() -> None:
    # 10:00+02:00 is 08:00Z: earlier than 09:00Z, though its text sorts later.
    plus_two = timezone(timedelta(hours=2))
    early = job(0, event_time=datetime(2024, 5, 14, 10, 0, tzinfo=plus_two))
    later = job(1, event_time=datetime(2024, 5, 14, 9, 0, tzinfo=UTC))
    doc = apply([(later, "pending"), (early, "pending")])
    assert datetime.fromisoformat(doc["expiresAt"]) == datetime(2024, 5, 15, 8, 0, tzinfo=UTC)
