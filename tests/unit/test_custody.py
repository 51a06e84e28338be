"""The evidence written once beside each chunk: the custody record (what it proves, how it is built), the
source-deleted record and the external record, and what the state follows from each."""

from __future__ import annotations

from datetime import UTC, datetime

from recording_pipeline.core.custody import ExternalRecord
from recording_pipeline.core.state import RecordingState, StorageType, recording_state

CALL = "3f1c8f6e-52f4-4a55-9f0e-8a7c2d1b4e90"
REC = "eyJyZWNvcmRpbmciOiIxIn0"
NOW = datetime(2024, 5, 14, 10, 40, tzinfo=UTC)


def test_an_external_record_makes_an_external_manifest() -> None:
    record = ExternalRecord(event_id="evt-1", call_id=CALL, recording_id=REC, recording_key=f"r-{REC}", received_at=NOW)
    doc = record.manifest()
    assert doc.state is RecordingState.EXTERNAL and doc.storage_type is StorageType.BLOB
    assert doc.call_id == CALL and recording_state(doc) is RecordingState.EXTERNAL
    assert doc.to_json()["storageType"] == "blobstorage"
