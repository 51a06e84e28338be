"""The evidence written once beside each chunk: the custody record (what it proves, how it is built), the
source-deleted record and the external record, and what the state follows from each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recording_pipeline.core.custody import (
    ArchivedBlock,
    ChunkIdentity,
    CustodyRecord,
    DeclaredSource,
    ExternalRecord,
    SourceAnswer,
    SourceDeletedRecord,
    Verification,
    custody_record,
)
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.ports import StagedBlock
from recording_pipeline.core.state import ChunkState, ChunkUpdate, RecordingState, StorageType, recording_state
from tests.support.events import CALL as EVENT_CALL
from tests.support.events import REC as EVENT_REC
from tests.support.events import raw_event, to_event
from tests.support.world import CALL as CALL_OF_JOB
from tests.support.world import job

CALL = "3f1c8f6e-52f4-4a55-9f0e-8a7c2d1b4e90"
REC = "eyJyZWNvcmRpbmciOiIxIn0"
NOW = datetime(2024, 5, 14, 10, 40, tzinfo=UTC)


def test_an_external_record_makes_an_external_manifest() -> None:
    record = ExternalRecord(event_id="evt-1", call_id=CALL, recording_id=REC, recording_key=f"r-{REC}", received_at=NOW)
    doc = record.manifest()
    assert doc.state is RecordingState.EXTERNAL and doc.storage_type is StorageType.BLOB
    assert doc.call_id == CALL and recording_state(doc) is RecordingState.EXTERNAL
    assert doc.to_json()["storageType"] == "blobstorage"


# --- the custody record ----------------------------------------------------------------------------

START = datetime(2026, 12, 1, 9, 0, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, 9, 0, 4, 500000, tzinfo=UTC)
VERIFIED = datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC)
BLOCKS = [StagedBlock("blk-0", 4), StagedBlock("blk-1", 2)]
DECLARED = {"Content-Type": "video/mp4", "ETag": '"0x8D"', "Last-Modified": "Tue, 01 Dec 2026 08:59:00 GMT"}


def record(
    content_length: int | None = 6, size: int = 6, chunk: RecordingChunk | None = None, **changes: Any
) -> CustodyRecord:
    chunk = chunk or job()
    args: dict[str, Any] = {
        "content_length": content_length,
        "declared": DECLARED,
        "received_from": START,
        "received_until": END,
        "resumed_from_byte": 0,
        "media_blob": f"{chunk.stem}.mp4",
        "content_type": "video/mp4",
        "size": size,
        "sha256": "ab" * 32,
        "blocks": BLOCKS,
        "metadata_blob": f"{chunk.stem}.metadata.json",
        "metadata_sha256": "cd" * 32,
        "verification": Verification.WHILE_STAGING,
        "verified_at": VERIFIED,
        "app_version": "9.9.9",
    }
    return custody_record(chunk, **{**args, **changes})


def test_the_record_names_the_chunk_the_source_and_the_archived_blob() -> None:
    chunk = job()
    proof = record()
    assert proof.chunk == ChunkIdentity.of(chunk) and proof.chunk.expires_at == chunk.expires_at
    assert proof.source == DeclaredSource(
        url=chunk.content_url,
        content_length=6,
        content_type="video/mp4",
        etag='"0x8D"',
        last_modified="Tue, 01 Dec 2026 08:59:00 GMT",
    )
    assert proof.blocks == [ArchivedBlock(id="blk-0", size=4), ArchivedBlock(id="blk-1", size=2)]
    assert (proof.received_from, proof.received_until, proof.verified_at) == (START, END, VERIFIED)
    assert (proof.kind, proof.schema_version, proof.app_version) == ("chain-of-custody", 1, "9.9.9")


def test_the_source_url_is_kept_without_its_query_string() -> None:
    signed = job().model_copy(update={"content_url": job().content_url + "?sig=secret&se=2026"})
    proof = record(chunk=signed)
    assert proof.source.url == job().content_url and "secret" not in proof.to_json().decode()


def test_what_another_attempt_committed_has_no_declared_headers_nor_transfer_times() -> None:
    proof = record(declared={}, received_from=None, received_until=None, verification=Verification.READ_BACK)
    assert (proof.source.content_type, proof.source.etag, proof.source.last_modified) == (None, None, None)
    assert proof.archived_update(None, False).transfer_seconds is None
    assert "receivedFrom" not in json.loads(proof.to_json())


def test_the_record_reads_back_as_it_was_written_in_camel_case() -> None:
    proof = record(resumed_from_byte=4)
    doc = json.loads(proof.to_json())
    assert doc["kind"] == "chain-of-custody" and doc["schema"] == 1
    assert doc["chunk"]["callId"] == CALL_OF_JOB and doc["resumedFromByte"] == 4 and doc["metadataSha256"] == "cd" * 32
    assert CustodyRecord.model_validate_json(proof.to_json()) == proof


@pytest.mark.parametrize(
    ("content_length", "size", "whole"), [(6, 6, True), (None, 6, False), (7, 6, False), (0, 0, True)]
)
def test_the_source_may_be_deleted_only_when_acs_stated_the_size_the_archive_holds(
    content_length: int | None, size: int, whole: bool
) -> None:
    assert record(content_length, size).source_proved_whole is whole


def test_the_archived_update_is_what_the_worker_records_and_rebuild_state_makes_again() -> None:
    proof = record(resumed_from_byte=4)
    deleted = VERIFIED + timedelta(seconds=1)
    update = proof.archived_update(deleted, source_kept=False)
    assert update == ChunkUpdate(
        ChunkState.ARCHIVED,
        media_blob=proof.media_blob,
        metadata_blob=proof.metadata_blob,
        content_type="video/mp4",
        size=6,
        sha256="ab" * 32,
        archived_at=VERIFIED,
        seconds_left_at_archive=round((job().expires_at - VERIFIED).total_seconds()),
        transfer_seconds=3.5,
        resumed_from_byte=4,
        source_deleted_at=deleted,
        source_kept_reason=None,
    )
    kept = record(None).archived_update(None, source_kept=True)
    assert kept.source_kept_reason == "ACS did not state the file's size" and kept.resumed_from_byte is None


def test_the_source_deleted_record_carries_the_chunk_and_the_answer() -> None:
    gone = SourceDeletedRecord(
        chunk=record().chunk,
        delete_url="https://us-storage.asm.skype.com/v1/objects/doc-1",
        answer=SourceAnswer.ALREADY_GONE,
        deleted_at=VERIFIED,
        app_version="9.9.9",
    )
    doc = json.loads(gone.to_json())
    assert (doc["kind"], doc["answer"], doc["chunk"]["documentId"]) == ("source-deleted", "already-gone", "doc-1")
    assert SourceDeletedRecord.model_validate_json(gone.to_json()) == gone


def test_an_external_record_of_an_event_names_its_recording() -> None:
    event = to_event(raw_event(storageType="blobstorage"))
    made = ExternalRecord.of(event, NOW)
    assert (made.event_id, made.call_id, made.recording_id, made.recording_key) == (
        event.envelope.id,
        EVENT_CALL,
        EVENT_REC,
        f"r-{EVENT_REC}",
    )
    assert made.received_at == NOW and made.topic == event.envelope.topic
