"""Blob names from recording identities (naming) and the per-chunk jobs planned from events (jobs)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.events import RecordingEvent, parse_recording_event, read_envelope
from recording_pipeline.core.jobs import (
    MAX_MESSAGE_BYTES,
    RecordingChunk,
    checked_identity,
    decode_job,
    encode_job,
    plan_jobs,
)
from recording_pipeline.core.naming import (
    MAX_ID_LENGTH,
    check_id,
    chunk_stem,
    lost_name,
    manifest_name,
    media_format,
    media_name,
    metadata_name,
    recording_key,
)
from recording_pipeline.core.settings import DEFAULT_ALLOWED_HOSTS, Settings
from recording_pipeline.core.urls import UrlPolicy

ACS_HOST = "acs-prod.communication.azure.com"
ACS_ENDPOINT = f"https://{ACS_HOST}"
POLICY = UrlPolicy(DEFAULT_ALLOWED_HOSTS, acs_endpoint_host=ACS_HOST)
CALL = "3f1c8f6e-52f4-4a55-9f0e-8a7c2d1b4e90"
SERVER = "aHR0cHM6Ly9hcGkuZmxpZ2h0cHJveHkuc2t5cGUuY29tL2FwaS92Mi9jcC9jb252LXVzd2UtMDEuY29udi5za3lwZS5jb20vY29udi8"
REC = "eyJQbGF0Zm9ybUVuZHBvaW50SWQiOiIyMjAwNWMwMC0zMzU0In0"
DOC = "0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8"
EVENT_TIME = datetime(2024, 5, 14, 10, 33, 2, tzinfo=UTC)


def raw_event(
    subject: str = f"/recording/call/{CALL}/serverCallId/{SERVER}/recordingId/{REC}",
    chunks: list[dict[str, Any]] | None = None,
    **data: Any,
) -> dict[str, Any]:
    if chunks is None:
        chunks = [chunk(DOC, 0, "SessionEnded")]
    return {
        "id": "5b0c1e7a-77c4-4d84-a0a5-0f9d2e1c3b4a",
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/acs-prod",
        "subject": subject,
        "eventType": "Microsoft.Communication.RecordingFileStatusUpdated",
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": "2024-05-14T10:33:02Z",
        "data": {"recordingStorageInfo": {"recordingChunks": chunks}, "recordingDurationMs": 60000, **data},
    }


def chunk(document_id: str, index: int, end_reason: str | None = None, legacy: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"documentId": document_id, "index": index, "endReason": end_reason}
    if not legacy:
        out["contentLocation"] = f"https://storage.asm.skype.com/v1/objects/{document_id}/content/video"
        out["metadataLocation"] = f"https://storage.asm.skype.com/v1/objects/{document_id}/content/acsmetadata"
        out["deleteLocation"] = f"https://us-storage.asm.skype.com/v1/objects/{document_id}"
    return out


def to_event(raw: dict[str, Any]) -> RecordingEvent:
    return parse_recording_event(read_envelope(raw, "eventgrid"))


def plan(raw: dict[str, Any], retention: float = 24) -> list[RecordingChunk]:
    return plan_jobs(to_event(raw), ACS_ENDPOINT, retention, POLICY)


# --- check_id ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        CALL,
        CALL.upper(),
        REC,
        SERVER,
        DOC,
        "a",
        "0",
        "abc_DEF-123",
        "padded==",
        "8:acs:6c4f5e3a-1b2d-4e8f-9a0b-7c6d5e4f3a2b_00000022-1a2b-3c4d",
        "v1.2.3",
        "x" * MAX_ID_LENGTH,
    ],
)
def test_check_id_accepts_documented_id_shapes(value: str) -> None:
    assert check_id(value, "callId") == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "is missing"),
        ("", "is missing"),
        ("x" * (MAX_ID_LENGTH + 1), "is longer than 256"),
        ("..", "has characters outside"),
        ("a..b", "has characters outside"),
        ("a/b", "has characters outside"),
        ("a\\b", "has characters outside"),
        ("a b", "has characters outside"),
        (" a", "has characters outside"),
        ("a\x00b", "has characters outside"),
        ("a\x1bb", "has characters outside"),
        ("a\x7f", "has characters outside"),
        ("a\tb", "has characters outside"),
        ("a\nb", "has characters outside"),
        ("abc\n", "has characters outside"),
        ("abc\r", "has characters outside"),
        (".hidden", "has characters outside"),
        ("-leading", "has characters outside"),
        ("_leading", "has characters outside"),
        ("caf\u00e9", "has characters outside"),
        ("a%2Fb", "has characters outside"),
        ("a+b", "has characters outside"),
        ("a?b", "has characters outside"),
        ("a#b", "has characters outside"),
    ],
)
def test_check_id_rejects_unsafe_ids_naming_the_field(value: str | None, message: str) -> None:
    with pytest.raises(InvalidEventError, match=rf"^recordingId {message}"):
        check_id(value, "recordingId")


UNSAFE_SEGMENTS = ["..", "a..b", "a\\b", "a b", "a\x00b", "a\x01b", "abc\n", "x" * 257, "caf\u00e9"]


@pytest.mark.parametrize("bad", UNSAFE_SEGMENTS)
@pytest.mark.parametrize(
    ("field", "template"),
    [
        ("callId", "/recording/call/{bad}/serverCallId/s1/recordingId/r1"),
        ("serverCallId", "/recording/call/c1/serverCallId/{bad}/recordingId/r1"),
        ("recordingId", "/recording/call/c1/serverCallId/s1/recordingId/{bad}"),
        ("serverCallId", "/recording/call/c1/serverCallId/{bad}"),
    ],
)
def test_plan_jobs_rejects_unsafe_ids_in_the_subject(bad: str, field: str, template: str) -> None:
    raw = raw_event(subject=template.format(bad=bad))
    with pytest.raises(InvalidEventError, match=f"^{field} "):
        plan(raw)


@pytest.mark.parametrize("bad", ["../../other-call", "a/b", "/abs", *(s for s in UNSAFE_SEGMENTS if s != "abc\n")])
def test_plan_jobs_rejects_unsafe_recording_id_from_data(bad: str) -> None:
    # (data fields are whitespace-stripped by the model, so a trailing newline there never reaches check_id)
    raw = raw_event(subject=f"/recording/call/{CALL}/serverCallId/{SERVER}", recordingId=bad)
    with pytest.raises(InvalidEventError, match="recordingId"):
        plan(raw)


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "a b", "a\x00b", "..", "x" * 257, "caf\u00e9"])
@pytest.mark.parametrize("legacy", [False, True])
def test_plan_jobs_rejects_unsafe_document_ids(bad: str, legacy: bool) -> None:
    raw = raw_event(chunks=[chunk(DOC, 0), chunk(bad, 1, "SessionEnded", legacy=legacy)])
    with pytest.raises(InvalidEventError, match=r"^documentId "):
        plan(raw)


def test_plan_jobs_rejects_empty_document_id() -> None:
    raw = raw_event(chunks=[{"documentId": "", "index": 0}])
    with pytest.raises(InvalidEventError, match="documentId"):
        plan(raw)


def test_plan_jobs_accepts_documented_ids_and_keeps_them_verbatim() -> None:
    (job,) = plan(raw_event())
    assert (job.call_id, job.server_call_id, job.recording_id, job.document_id) == (CALL, SERVER, REC, DOC)
    assert job.stem == f"{CALL}/r-{REC}/00000-{DOC}"


def test_checked_identity_returns_safe_parts_and_key() -> None:
    assert checked_identity(to_event(raw_event())) == (CALL, SERVER, REC, f"r-{REC}")
    server_only = to_event(raw_event(subject=f"/recording/call/{CALL}/serverCallId/{SERVER}"))
    digest = hashlib.sha256(SERVER.encode()).hexdigest()[:32]
    assert checked_identity(server_only) == (CALL, SERVER, None, f"s-{digest}")
    assert checked_identity(to_event(raw_event(subject=f"/recording/call/{CALL}"))) == (CALL, None, None, "call")


# --- recording_key and blob names --------------------------------------------------------------


def test_recording_key_prefers_recording_id_then_server_call_digest_then_call() -> None:
    digest = hashlib.sha256(b"server-1").hexdigest()[:32]
    assert recording_key("rec-1", "server-1") == "r-rec-1"
    assert recording_key(None, "server-1") == f"s-{digest}"
    assert recording_key(None, None) == "call"
    assert recording_key("", "") == "call"


def test_recording_key_kinds_cannot_collide() -> None:
    server_key = recording_key(None, "server-1")
    # A recordingId spelled like the other kinds' keys still lands in its own r- namespace.
    assert recording_key(server_key, None) != server_key
    assert recording_key(server_key[2:], None) != server_key
    assert recording_key("call", None) != recording_key(None, None)
    assert recording_key("s", None) != recording_key(None, "s")


def test_recording_key_digest_is_bounded_for_long_server_call_ids() -> None:
    key = recording_key(None, "S" * 256)
    assert len(key) == 34
    assert recording_key(None, "S" * 256) == key
    assert recording_key(None, "S" * 255) != key


def test_blob_names_follow_the_documented_layout() -> None:
    stem = chunk_stem(CALL, f"r-{REC}", 7, DOC)
    assert stem == f"{CALL}/r-{REC}/00007-{DOC}"
    assert media_name(stem, "mp4") == f"{stem}.mp4"
    assert metadata_name(stem) == f"{stem}.metadata.json"
    assert lost_name(stem) == f"_lost/{stem}.json"
    assert manifest_name(CALL, f"r-{REC}") == f"{CALL}/r-{REC}/manifest.json"


_ID_ALPHABET = "aZ09-_.:="
safe_ids = st.text(alphabet=_ID_ALPHABET, min_size=1, max_size=6).filter(
    lambda s: s[0].isalnum() and ".." not in s
) | st.sampled_from([CALL, REC, DOC, SERVER])
indexes = st.integers(min_value=0, max_value=100_000)


def _names(call_id: str, rec_key: str, index: int, document_id: str) -> set[str]:
    stem = chunk_stem(call_id, rec_key, index, document_id)
    names = {media_name(stem, ext) for ext in ("mp4", "mp3", "wav", "bin")}
    return names | {metadata_name(stem), lost_name(stem), manifest_name(call_id, rec_key)}


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(safe_ids, safe_ids, indexes, safe_ids),
    b=st.tuples(safe_ids, safe_ids, indexes, safe_ids),
)
def test_distinct_recording_chunks_never_share_a_stem(
    a: tuple[str, str, int, str], b: tuple[str, str, int, str]
) -> None:
    stems = []
    for call_id, recording_id, index, document_id in (a, b):
        for value, what in ((call_id, "callId"), (recording_id, "recordingId"), (document_id, "documentId")):
            check_id(value, what)
        stems.append(chunk_stem(call_id, recording_key(recording_id, None), index, document_id))
    assert (stems[0] == stems[1]) == (a == b)


@settings(max_examples=200, deadline=None)
@given(
    a=st.tuples(safe_ids, st.none() | safe_ids, st.none() | safe_ids, indexes, safe_ids),
    b=st.tuples(safe_ids, st.none() | safe_ids, st.none() | safe_ids, indexes, safe_ids),
)
def test_distinct_chunks_of_any_identity_kind_never_share_a_blob_name(
    a: tuple[str, str | None, str | None, int, str], b: tuple[str, str | None, str | None, int, str]
) -> None:
    def identity(t: tuple[str, str | None, str | None, int, str]) -> tuple[Any, ...]:
        call_id, server_call_id, recording_id, index, document_id = t
        # A recordingId names the recording; without one the serverCallId does; without both, the call.
        who = ("r", recording_id) if recording_id else ("s", server_call_id) if server_call_id else ("call",)
        return call_id, who, index, document_id

    names_a = _names(a[0], recording_key(a[2], a[1]), a[3], a[4])
    names_b = _names(b[0], recording_key(b[2], b[1]), b[3], b[4])
    same_recording = identity(a)[:2] == identity(b)[:2]
    if identity(a) == identity(b):
        assert names_a == names_b
    elif same_recording:
        assert names_a & names_b == {manifest_name(a[0], recording_key(a[2], a[1]))}
    else:
        assert not names_a & names_b


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("aZ09-_.:=/\\ \n\t\x00\x7f\u00e9\u0130"), min_size=1, max_size=8)
    | st.text(max_size=8)
)
@example("abc\n")
def test_check_id_output_is_always_a_single_safe_path_segment(value: str) -> None:
    try:
        checked = check_id(value, "callId")
    except InvalidEventError:
        return
    assert checked == value
    assert all(c.isascii() and (c.isalnum() or c in "_=.:-") for c in checked)
    assert ".." not in checked
    assert checked[0].isalnum()


# --- media_format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        (("mp4",), ("mp4", "video/mp4")),
        (("Mp3",), ("mp3", "audio/mpeg")),
        ((" WAV ",), ("wav", "audio/wav")),
        ((None, "wav"), ("wav", "audio/wav")),
        (("flac", "mp3"), ("mp3", "audio/mpeg")),
        (("flac",), ("bin", "application/octet-stream")),
        ((), ("bin", "application/octet-stream")),
        ((None, ""), ("bin", "application/octet-stream")),
    ],
)
def test_media_format(candidates: tuple[str | None, ...], expected: tuple[str, str]) -> None:
    assert media_format(*candidates) == expected


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
    retention = Settings.from_env(env).retention_hours
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
