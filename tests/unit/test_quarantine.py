"""Quarantine records: what the worker writes, and what replay reads back (its own, or a bare job the host moved)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from recording_pipeline.core.jobs import RecordingChunk, decode_job, encode_job
from recording_pipeline.core.quarantine import QuarantineRecord, job_text_of

NOW = datetime(2026, 12, 1, tzinfo=UTC)
JOB = RecordingChunk(
    event_id="e",
    event_time=NOW,
    expires_at=NOW + timedelta(hours=24),
    call_id="c",
    recording_key="call",
    chunk_index=0,
    document_id="d",
    content_url="https://x.asm.skype.com/v1/objects/d/content/video",
    metadata_url="https://x.asm.skype.com/v1/objects/d/content/acsmetadata",
)


def test_a_record_holds_the_error_the_attempts_the_time_and_the_job() -> None:
    record = QuarantineRecord("AcsTransientError: 503", 4, NOW, json.loads(JOB.model_dump_json()))
    doc = json.loads(record.to_json())
    assert doc["error"] == "AcsTransientError: 503" and doc["attempts"] == 4
    assert doc["quarantinedAt"] == NOW.isoformat() and doc["original"] is None
    text = job_text_of(record.to_json())
    assert text is not None and decode_job(text) == JOB


def test_the_bare_job_the_host_moves_reads_as_a_job() -> None:
    text = job_text_of(encode_job(JOB))
    assert text is not None and decode_job(text) == JOB


def test_a_record_of_an_undecodable_message_keeps_it_and_holds_no_job() -> None:
    record = QuarantineRecord("InvalidEventError: x", 1, NOW, None, "garbage")
    assert json.loads(record.to_json())["original"] == "garbage"
    assert job_text_of(record.to_json()) is None


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"error": "x", "job": {"call_id": "c"}}', b"\xff"])
def test_anything_else_holds_no_job(content: bytes) -> None:
    assert job_text_of(content) is None
