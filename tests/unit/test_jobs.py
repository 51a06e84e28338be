"""The per-chunk jobs planned from events: planning, deadlines, legacy URLs, and the queue encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recording_pipeline.core.custody import ExternalRecord
from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.jobs import (
    MAX_MESSAGE_BYTES,
    decode_job,
    encode_job,
)
from recording_pipeline.core.planning import plan_event
from recording_pipeline.core.settings import Settings
from tests.support.events import (
    ACS_ENDPOINT,
    ACS_HOST,
    CALL,
    DOC,
    EVENT_TIME,
    POLICY,
    REC,
    SERVER,
    chunk,
    plan,
    raw_event,
    to_event,
)

RECEIVED = datetime(2024, 5, 14, 10, 33, 5, tzinfo=UTC)

# --- plan_event: jobs, or the record of a bring-your-own-storage recording ------------------------


def test_an_event_in_acs_storage_plans_its_jobs_and_nothing_else() -> None:
    raw = raw_event(chunks=[chunk(DOC, 0), chunk("0-eus-d12-2", 1, "SessionEnded")])
    planned = plan_event(to_event(raw), RECEIVED, ACS_ENDPOINT, 24, POLICY)
    assert planned == plan(raw)
    assert isinstance(planned, list) and [j.chunk_index for j in planned] == [0, 1]


@pytest.mark.parametrize("storage_type", ["blobstorage", " BlobStorage "])
def test_a_bring_your_own_storage_event_plans_its_external_record_and_no_job(storage_type: str) -> None:
    event = to_event(raw_event(storageType=storage_type))
    planned = plan_event(event, RECEIVED, ACS_ENDPOINT, 24, POLICY)
    assert planned == ExternalRecord(
        event_id=event.envelope.id,
        call_id=CALL,
        recording_id=REC,
        server_call_id=SERVER,
        recording_key=f"r-{REC}",
        topic=event.envelope.topic,
        received_at=RECEIVED,
    )


def test_a_bring_your_own_storage_event_with_an_unsafe_id_is_rejected_whole() -> None:
    event = to_event(raw_event(subject="/recording/call/../serverCallId/x", storageType="blobstorage"))
    with pytest.raises(InvalidEventError):
        plan_event(event, RECEIVED, ACS_ENDPOINT, 24, POLICY)


# --- plan_jobs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "delta"), [("24", timedelta(hours=24)), ("48", timedelta(hours=48)), ("1.5", timedelta(minutes=90))]
)
def test_expires_at_is_event_time_plus_retention_setting(hours: str, delta: timedelta) -> None:
    env = {
        "ACS_ENDPOINT": ACS_ENDPOINT,
        "ARCHIVE_STORAGE_ACCOUNT_URL": "https://archive.blob.core.windows.net",
        "AzureWebJobsStorage__accountName": "funcstore",
        "RECORDING_RETENTION_HOURS": hours,
    }
    retention = Settings.from_env(env).webhook.retention_hours
    jobs = plan(raw_event(chunks=[chunk(DOC, 0), chunk("0-eus-d12-2", 1, "SessionEnded")]), retention=retention)
    assert [j.expires_at for j in jobs] == [EVENT_TIME + delta] * 2
    assert all(j.event_time == EVENT_TIME for j in jobs)
    assert jobs[0].seconds_left(EVENT_TIME) == delta.total_seconds()


def test_plan_jobs_keeps_chunk_order_and_metadata() -> None:
    chunks = [chunk("0-eus-d12-b", 2, "SessionEnded"), chunk("0-eus-d12-a", 0, "ChunkMaximumSizeExceeded")]
    jobs = plan(raw_event(chunks=chunks, recordingFormatType="wav", recordingStartTime="2024-05-14T09:00:00Z"))
    assert [(j.chunk_index, j.document_id) for j in jobs] == [(2, "0-eus-d12-b"), (0, "0-eus-d12-a")]
    assert {j.format_hint for j in jobs} == {"wav"}
    assert {j.recording_start_time for j in jobs} == {datetime(2024, 5, 14, 9, tzinfo=UTC)}
    assert {j.recording_duration_ms for j in jobs} == {60000}


def test_legacy_chunk_urls_are_built_from_the_endpoint_and_document_id() -> None:
    (job,) = plan(raw_event(subject=f"/recording/call/{CALL}", chunks=[chunk(DOC, 0, "SessionEnded", legacy=True)]))
    assert job.content_url == f"https://{ACS_HOST}/recording/download/{DOC}"
    assert job.metadata_url == f"https://{ACS_HOST}/recording/download/{DOC}/metadata"
    assert job.delete_url is None


def test_legacy_and_current_chunks_mix_in_one_event() -> None:
    jobs = plan(raw_event(chunks=[chunk(DOC, 0, legacy=True), chunk("0-eus-d12-2", 1, "SessionEnded")]))
    assert jobs[0].content_url.startswith(f"https://{ACS_HOST}/recording/download/")
    assert jobs[1].content_url.startswith("https://storage.asm.skype.com/")
    assert [j.delete_url is None for j in jobs] == [True, False]


@pytest.mark.parametrize(
    ("end_reason", "last"),
    [
        ("SessionEnded", True),
        ("sessionended", True),
        ("SESSIONENDED", True),
        (" SessionEnded ", True),
        ("ChunkMaximumSizeExceeded", False),
        ("SessionEndedSoon", False),
        ("Unknown", False),
        ("", False),
        (None, False),
    ],
)
def test_is_last_chunk_only_for_session_ended(end_reason: str | None, last: bool) -> None:
    (job,) = plan(raw_event(chunks=[chunk(DOC, 3, end_reason)]))
    assert job.is_last_chunk is last


# --- encode_job / decode_job ----------------------------------------------------------------------


def test_encode_decode_round_trip() -> None:
    jobs = plan(raw_event(chunks=[chunk(DOC, 0, "ChunkMaximumSizeExceeded"), chunk("0-eus-d12-2", 1, "SessionEnded")]))
    for job in jobs:
        text = encode_job(job)
        assert decode_job(text) == job
        assert decode_job(text.encode()) == job


def test_encoded_job_is_compact_json_without_nulls() -> None:
    (job,) = plan(raw_event(subject=f"/recording/call/{CALL}", chunks=[chunk(DOC, 0, legacy=True)]))
    payload = json.loads(encode_job(job))
    assert payload["version"] == 1
    assert payload["document_id"] == DOC
    assert "delete_url" not in payload
    assert "recording_id" not in payload
    assert None not in payload.values()
    assert decode_job(encode_job(job)) == job


def test_encode_refuses_a_job_larger_than_a_queue_message() -> None:
    (job,) = plan(raw_event())
    huge = job.model_copy(update={"content_url": "https://storage.asm.skype.com/" + "a" * MAX_MESSAGE_BYTES})
    with pytest.raises(InvalidEventError, match="larger than a queue message"):
        encode_job(huge)


def _encoded() -> dict[str, Any]:
    (job,) = plan(raw_event())
    payload: dict[str, Any] = json.loads(encode_job(job))
    return payload


@pytest.mark.parametrize("text", ["not json", "", b"\xff\xfe", "[]", "null", "42", '"job"', "{}"])
def test_decode_rejects_garbage(text: str | bytes) -> None:
    with pytest.raises(InvalidEventError, match="queue message is not a RecordingChunk job"):
        decode_job(text)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chunk_index", "first"),
        ("chunk_index", -1),
        ("chunk_index", 1.5),
        ("event_time", "yesterday"),
        ("expires_at", None),
        ("version", 2),
        ("call_id", None),
        ("content_url", 17),
        ("recording_duration_ms", "long"),
    ],
)
def test_decode_rejects_wrong_types_naming_the_field(field: str, value: Any) -> None:
    payload = _encoded()
    payload[field] = value
    with pytest.raises(InvalidEventError, match=f": {field}: "):
        decode_job(json.dumps(payload))


@pytest.mark.parametrize("field", ["event_id", "event_time", "expires_at", "call_id", "recording_key", "document_id"])
def test_decode_rejects_missing_required_fields(field: str) -> None:
    payload = _encoded()
    del payload[field]
    with pytest.raises(InvalidEventError, match=f": {field}: Field required"):
        decode_job(json.dumps(payload))


def test_decode_rejects_extra_fields() -> None:
    payload = {**_encoded(), "access_key": "c2VjcmV0"}
    with pytest.raises(InvalidEventError, match="access_key: Extra inputs are not permitted"):
        decode_job(json.dumps(payload))
