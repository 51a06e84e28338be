"""The one model of state: chunk states only move up, a recording is complete only when provably whole, and
the manifest's JSON reads back as it was written (and as older manifests wrote it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.state import (
    ChunkState,
    ChunkUpdate,
    Manifest,
    RecordingState,
    chunk_key,
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


A, F, L, P = ChunkState.ARCHIVED, ChunkState.FAILED, ChunkState.LOST, ChunkState.PENDING


def apply(steps: list[tuple[RecordingChunk, ChunkState]], manifest: Manifest | None = None) -> Manifest:
    doc = manifest
    for step, (chunk_job, state) in enumerate(steps):
        doc = record_chunk(doc, chunk_job, NOW + timedelta(seconds=step), ChunkUpdate(state))
    assert doc is not None
    return doc


def test_new_manifest_describes_the_recording() -> None:
    doc = new_manifest(job(0), NOW)
    assert (doc.call_id, doc.recording_id, doc.recording_key, doc.server_call_id) == (CALL, REC, f"r-{REC}", None)
    assert doc.recording_start_time == datetime(2024, 5, 14, 9, tzinfo=UTC)
    assert doc.expires_at == EVENT_TIME + timedelta(hours=24)
    assert doc.state is RecordingState.INCOMPLETE
    assert doc.last_chunk_index is None and doc.chunks == {}
    assert doc.created_at == doc.updated_at == NOW


def test_the_json_keeps_the_manifest_s_field_names_and_time_format() -> None:
    doc = record_chunk(None, last(3), NOW, ChunkUpdate(A, size=1234, sha256="ab" * 32, media_blob="m.mp4"))
    data = doc.to_json()
    assert data["schema"] == 1 and data["callId"] == CALL and data["recordingKey"] == f"r-{REC}"
    assert data["recordingStartTime"] == "2024-05-14T09:00:00+00:00"
    assert data["expiresAt"] == "2024-05-15T10:33:02+00:00"
    assert data["state"] == "incomplete" and data["lastChunkIndex"] == 3
    entry = data["chunks"]["00003"]
    assert entry == {
        "index": 3,
        "documentId": job(3).document_id,
        "state": "archived",
        "endReason": "SessionEnded",
        "expiresAt": "2024-05-15T10:33:02+00:00",
        "firstSeenAt": NOW.isoformat(),
        "mediaBlob": "m.mp4",
        "size": 1234,
        "sha256": "ab" * 32,
    }
    assert Manifest.from_json(data) == doc


def test_a_manifest_with_fields_it_does_not_know_reads_and_keeps_them() -> None:
    data = apply([(last(0), A)]).to_json()
    data["addedLater"] = {"x": 1}
    data["chunks"]["00000"]["alsoNew"] = True
    again = Manifest.from_json(data).to_json()
    assert again["addedLater"] == {"x": 1} and again["chunks"]["00000"]["alsoNew"] is True


def test_record_chunk_creates_the_manifest_and_chunk_entry() -> None:
    doc = record_chunk(None, job(3), NOW, ChunkUpdate(A, size=1234, sha256="ab" * 32))
    entry = doc.chunk(3)
    assert chunk_key(3) == "00003"
    assert entry is not None and entry.index == 3 and entry.document_id == job(3).document_id
    assert (entry.state, entry.size, entry.sha256) == (A, 1234, "ab" * 32)
    assert entry.last_error is None and entry.first_seen_at == NOW


def test_record_chunk_does_not_change_what_it_was_given() -> None:
    first = apply([(job(0), P)])
    record_chunk(first, job(0), NOW, ChunkUpdate(A, size=1))
    assert first.chunks["00000"].state is P


@pytest.mark.parametrize("late", [P, F, L])
def test_archived_chunk_is_never_lowered_by_a_late_update(late: ChunkState) -> None:
    doc = record_chunk(None, last(0), NOW, ChunkUpdate(A, sha256="cd" * 32, size=10))
    later = NOW + timedelta(minutes=5)
    doc = record_chunk(doc, last(0), later, ChunkUpdate(late, last_error="late duplicate", sha256="00" * 32))
    entry = doc.chunks["00000"]
    assert (entry.state, entry.sha256, entry.last_error) == (A, "cd" * 32, None)
    assert doc.state is RecordingState.COMPLETE
    assert doc.updated_at == later


@pytest.mark.parametrize(
    ("first", "then", "expected"), [(P, F, F), (F, P, F), (F, A, A), (L, F, L), (P, A, A), (L, A, A)]
)
def test_chunk_state_only_moves_up(first: ChunkState, then: ChunkState, expected: ChunkState) -> None:
    assert apply([(job(0), first), (job(0), then)]).chunks["00000"].state is expected


def test_the_ranks_of_chunk_states() -> None:
    assert sorted(ChunkState, key=lambda s: s.rank) == [P, F, L, A]


def test_complete_only_when_every_chunk_up_to_the_last_is_archived() -> None:
    doc = apply([(job(0), A), (job(1), A)])
    assert doc.last_chunk_index is None
    assert doc.state is RecordingState.INCOMPLETE  # no SessionEnded chunk yet: more may follow

    doc = apply([(last(2), P)], doc)
    assert (doc.last_chunk_index, doc.total_chunks, doc.state) == (2, 3, RecordingState.INCOMPLETE)
    assert doc.missing_chunks() == (2,)

    doc = apply([(last(2), A)], doc)
    assert doc.state is RecordingState.COMPLETE and doc.missing_chunks() == ()


def test_single_chunk_recording_completes() -> None:
    assert apply([(last(0), A)]).state is RecordingState.COMPLETE


def test_gap_before_the_last_chunk_keeps_it_incomplete() -> None:
    doc = apply([(job(0), A), (last(2), A)])
    assert doc.last_chunk_index == 2
    assert doc.state is recording_state(doc) is RecordingState.INCOMPLETE
    assert doc.missing_chunks() == (1,)


def test_failed_chunk_keeps_it_incomplete() -> None:
    doc = apply([(job(0), F), (last(1), A)])
    assert doc.state is RecordingState.INCOMPLETE and doc.count(F) == 1


@pytest.mark.parametrize("lost_index", [0, 1, 2])
def test_any_lost_chunk_makes_the_recording_lost(lost_index: int) -> None:
    steps = [(job(i) if i < 2 else last(i), L if i == lost_index else A) for i in range(3)]
    assert apply(steps).state is RecordingState.LOST


def test_lost_wins_even_without_a_known_last_chunk() -> None:
    assert apply([(job(0), A), (job(1), L)]).state is RecordingState.LOST


def test_chunks_arriving_out_of_order_end_complete() -> None:
    states = []
    doc: Manifest | None = None
    for index in (2, 0, 1):
        doc = record_chunk(doc, last(2) if index == 2 else job(index), NOW, ChunkUpdate(A))
        states.append(doc.state)
    assert states == [RecordingState.INCOMPLETE, RecordingState.INCOMPLETE, RecordingState.COMPLETE]
    assert doc is not None
    assert sorted(doc.chunks) == ["00000", "00001", "00002"]
    assert doc.last_chunk_index == 2


def test_duplicate_deliveries_converge() -> None:
    once = apply([(job(0), A), (last(1), A)])
    twice = apply([(job(0), A), (last(1), A), (job(0), P), (last(1), A)])
    assert once.chunks.keys() == twice.chunks.keys()
    assert [c.state for c in twice.chunks.values()] == [A, A]
    assert twice.state is once.state is RecordingState.COMPLETE


def test_archived_bytes_count_archived_chunks_only() -> None:
    doc = record_chunk(None, job(0), NOW, ChunkUpdate(A, size=100))
    doc = record_chunk(doc, job(1), NOW, ChunkUpdate(F, size=50))
    assert doc.archived_bytes == 100


def test_recording_state_of_a_hand_built_document() -> None:
    chunks = {chunk_key(i): {"index": i, "state": "archived"} for i in range(3)}

    def state(**fields: object) -> RecordingState:
        return recording_state(Manifest.from_json({"callId": CALL, "recordingKey": "r-x", "chunks": chunks, **fields}))

    assert state(lastChunkIndex=2) is RecordingState.COMPLETE
    assert state(lastChunkIndex=3) is RecordingState.INCOMPLETE
    assert state(lastChunkIndex=None) is RecordingState.INCOMPLETE
    assert state(storageType="blobstorage") is RecordingState.EXTERNAL


def test_expires_at_is_the_earliest_deadline_of_any_chunk() -> None:
    doc = apply([(job(0, event_time=EVENT_TIME + timedelta(hours=1)), P), (job(1), P)])
    assert doc.expires_at == EVENT_TIME + timedelta(hours=24)


def test_expires_at_compares_instants_not_strings() -> None:
    # 10:00+02:00 is 08:00Z: earlier than 09:00Z, though its text sorts later.
    plus_two = timezone(timedelta(hours=2))
    early = job(0, event_time=datetime(2024, 5, 14, 10, 0, tzinfo=plus_two))
    later = job(1, event_time=datetime(2024, 5, 14, 9, 0, tzinfo=UTC))
    doc = apply([(later, P), (early, P)])
    assert doc.expires_at == datetime(2024, 5, 15, 8, 0, tzinfo=UTC)
