"""Event parsing: the documented event samples in both schemas, and every kind of bad input.

The fixtures in ``tests/fixtures/events/`` follow the samples of the Call Recording
docs (notification schema, subjects old and new, documentId-only chunks) and
ACS-NOTES.md (bring-your-own-storage, newer fields, CloudEvents).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.events import (
    RECORDING_EVENT_TYPE,
    VALIDATION_EVENT_TYPE,
    RecordingEvent,
    RecordingIdentity,
    parse_recording_event,
    parse_subject,
    read_envelope,
    split_body,
    validation_code,
)
from recording_pipeline.core.jobs import RecordingChunk, plan_jobs
from recording_pipeline.core.naming import media_format
from recording_pipeline.core.settings import DEFAULT_ALLOWED_HOSTS
from recording_pipeline.core.urls import UrlPolicy
from tests.support.stack import REPO

FIXTURES = REPO / "tests" / "fixtures" / "events"
ACS_ENDPOINT = "https://acs-prod.communication.azure.com"
POLICY = UrlPolicy(DEFAULT_ALLOWED_HOSTS, allow_http=False, acs_endpoint_host="acs-prod.communication.azure.com")

CALL = "3f1c8f6e-52f4-4a55-9f0e-8a7c2d1b4e90"
SERVER = (
    "aHR0cHM6Ly9hcGkuZmxpZ2h0cHJveHkuc2t5cGUuY29tL2FwaS92Mi9jcC9jb252LXVzd2UtMDEuY29udi5za3lwZS5jb20vY29udi9kR3Rr"
    "WDhLVWRrLVpiM2gxVkxDdzVBP2k9MTAmZT02MzgyNzg2MjQ2MDk1NTE2NTg"
)
REC = (
    "eyJQbGF0Zm9ybUVuZHBvaW50SWQiOiIyMjAwNWMwMC0zMzU0LTQ2ZDMtODU2MC05MjM5YzE1YjA5NmIiLCJSZXNvdXJjZVNwZWNpZmljSWQiOiJk"
    "OWFlNmE2Yi1hYTliLTRmMDQtYjRmMy1hNGEyN2VjNmE0YmYifQ"
)
DOC0 = "0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8"
DOC1 = "0-eus-d12-4c2f7a9e1b3d5f60718293a4b5c6d7e8"
TOPIC = (
    "/subscriptions/6c4f5e3a-1b2d-4e8f-9a0b-7c6d5e4f3a2b/resourceGroups/rg-calls/providers/"
    "Microsoft.Communication/communicationServices/acs-prod"
)
EVENT_TIME = datetime(2024, 5, 14, 10, 33, 2, 751610, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def fixture_body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse_body(body: bytes, content_type: str | None = "application/json") -> list[RecordingEvent]:
    raw_events, schema = split_body(body, content_type)
    return [parse_recording_event(read_envelope(raw, schema)) for raw in raw_events]


def plan_body(
    body: bytes, content_type: str | None = "application/json", retention: float = 24
) -> list[RecordingChunk]:
    return [
        job for event in parse_body(body, content_type) for job in plan_jobs(event, ACS_ENDPOINT, retention, POLICY)
    ]


def plan_raw(raw: dict[str, Any]) -> list[RecordingChunk]:
    return plan_body(json.dumps([raw]).encode())


def current_event() -> dict[str, Any]:
    event: dict[str, Any] = load("eventgrid_current.json")[0]
    return event


# --- documented samples -------------------------------------------------------------------------


def test_current_schema_plans_one_job_per_chunk_with_its_urls() -> None:
    jobs = plan_body(fixture_body("eventgrid_current.json"))

    assert [(j.chunk_index, j.document_id, j.end_reason) for j in jobs] == [
        (0, DOC0, "ChunkMaximumSizeExceeded"),
        (1, DOC1, "SessionEnded"),
    ]
    first = jobs[0]
    assert (first.call_id, first.server_call_id, first.recording_id) == (CALL, SERVER, REC)
    assert first.recording_key == f"r-{REC}"
    assert first.content_url == f"https://storage.asm.skype.com/v1/objects/{DOC0}/content/video"
    assert first.metadata_url == f"https://storage.asm.skype.com/v1/objects/{DOC0}/content/acsmetadata"
    assert first.delete_url == f"https://us-storage.asm.skype.com/v1/objects/{DOC0}"
    assert first.event_id == "8d1b0a0e-2f35-4a9c-9a4b-1f5e0c6d7a01"
    assert first.topic == TOPIC
    assert first.event_time == EVENT_TIME
    assert first.recording_start_time == datetime(2024, 5, 14, 9, 12, 31, 204000, tzinfo=UTC)
    assert first.recording_duration_ms == 4_813_240
    assert first.stem == f"{CALL}/r-{REC}/00000-{DOC0}"
    assert [j.is_last_chunk for j in jobs] == [False, True]


def test_current_schema_event_data_is_typed() -> None:
    (event,) = parse_body(fixture_body("eventgrid_current.json"))

    assert event.envelope.schema == "eventgrid"
    assert event.envelope.type == RECORDING_EVENT_TYPE
    assert event.identity == RecordingIdentity(CALL, SERVER, REC)
    assert event.data.session_end_reason == "CallEnded"
    assert event.data.storage_type is None
    assert len(event.data.chunks) == 2


@pytest.mark.parametrize(
    ("fixture", "server_call_id", "recording_id"),
    [
        ("eventgrid_subject_server_call_only.json", SERVER, None),
        ("eventgrid_subject_recording_id_only.json", None, REC),
        ("eventgrid_legacy_document_id_only.json", None, None),
    ],
)
def test_older_subjects_give_the_identity_they_carry(
    fixture: str, server_call_id: str | None, recording_id: str | None
) -> None:
    (event,) = parse_body(fixture_body(fixture))
    assert event.identity == RecordingIdentity(CALL, server_call_id, recording_id)


def test_older_subjects_get_distinct_recording_keys() -> None:
    keys = {
        name: plan_body(fixture_body(name))[0].recording_key
        for name in (
            "eventgrid_current.json",
            "eventgrid_subject_server_call_only.json",
            "eventgrid_subject_recording_id_only.json",
            "eventgrid_legacy_document_id_only.json",
        )
    }
    assert keys["eventgrid_current.json"] == keys["eventgrid_subject_recording_id_only.json"] == f"r-{REC}"
    assert keys["eventgrid_subject_server_call_only.json"].startswith("s-")
    assert len(keys["eventgrid_subject_server_call_only.json"]) == 2 + 32
    assert keys["eventgrid_legacy_document_id_only.json"] == "call"


def test_legacy_document_id_only_chunk_downloads_from_the_acs_endpoint() -> None:
    (job,) = plan_body(fixture_body("eventgrid_legacy_document_id_only.json"))

    assert job.content_url == f"{ACS_ENDPOINT}/recording/download/{DOC0}"
    assert job.metadata_url == f"{ACS_ENDPOINT}/recording/download/{DOC0}/metadata"
    assert job.delete_url is None
    assert job.stem == f"{CALL}/call/00000-{DOC0}"


def test_legacy_urls_ignore_a_trailing_slash_on_the_endpoint() -> None:
    (event,) = parse_body(fixture_body("eventgrid_legacy_document_id_only.json"))
    (job,) = plan_jobs(event, ACS_ENDPOINT + "/", 24, POLICY)
    assert job.content_url == f"{ACS_ENDPOINT}/recording/download/{DOC0}"


def test_bring_your_own_blob_storage_plans_no_jobs() -> None:
    (event,) = parse_body(fixture_body("eventgrid_byos_blobstorage.json"))
    assert event.data.storage_type == "blobstorage"
    assert plan_jobs(event, ACS_ENDPOINT, 24, POLICY) == []


def test_blob_storage_type_is_matched_case_insensitively() -> None:
    raw = load("eventgrid_byos_blobstorage.json")[0]
    raw["data"]["storageType"] = " BlobStorage "
    assert plan_raw(raw) == []


def test_acs_storage_plans_jobs_and_data_recording_id_fills_the_identity() -> None:
    (event,) = parse_body(fixture_body("eventgrid_byos_acsstorage.json"))
    assert event.identity == RecordingIdentity(CALL, SERVER, REC)

    (job,) = plan_jobs(event, ACS_ENDPOINT, 24, POLICY)
    assert (job.server_call_id, job.recording_id, job.recording_key) == (SERVER, REC, f"r-{REC}")


def test_subject_recording_id_wins_over_data_recording_id() -> None:
    raw = current_event()
    raw["data"]["recordingId"] = "eyJvdGhlciI6InJlY29yZGluZyJ9"
    (job, _second) = plan_raw(raw)
    assert job.recording_id == REC


def test_newer_and_unknown_fields_are_tolerated_and_read() -> None:
    (event,) = parse_body(fixture_body("eventgrid_newer_fields.json"))
    assert event.data.recording_content_type == "Audio"
    assert event.data.recording_channel_type == "Mixed"
    assert event.data.recording_format_type == "Mp3"

    (job,) = plan_jobs(event, ACS_ENDPOINT, 24, POLICY)
    assert job.format_hint == "Mp3"
    assert media_format(job.format_hint) == ("mp3", "audio/mpeg")
    assert job.document_id == DOC0


def test_cloudevents_single_gives_the_same_jobs_as_event_grid() -> None:
    grid = plan_body(fixture_body("eventgrid_current.json"))
    cloud = plan_body(fixture_body("cloudevents_single.json"), "application/cloudevents+json; charset=utf-8")

    assert len(cloud) == 2
    assert cloud == grid


def test_cloudevents_batch_gives_the_same_jobs_as_event_grid_batch() -> None:
    grid = plan_body(fixture_body("eventgrid_batch.json"))
    cloud = plan_body(fixture_body("cloudevents_batch.json"), "application/cloudevents-batch+json")

    assert len(cloud) == 3
    assert cloud == grid


def test_cloudevents_schema_is_recognised_from_specversion_without_the_content_type() -> None:
    _events, schema = split_body(fixture_body("cloudevents_single.json"), "application/json")
    assert schema == "cloudevents"


def test_cloudevents_envelope_maps_source_to_topic() -> None:
    (event,) = parse_body(fixture_body("cloudevents_single.json"), "application/cloudevents+json")
    assert event.envelope.schema == "cloudevents"
    assert event.envelope.topic == TOPIC
    assert event.envelope.time == EVENT_TIME


def test_split_body_wraps_a_single_event_object() -> None:
    single = json.dumps(current_event()).encode()
    events, schema = split_body(single, None)
    assert schema == "eventgrid"
    assert [e["id"] for e in events] == ["8d1b0a0e-2f35-4a9c-9a4b-1f5e0c6d7a01"]


def test_subscription_validation_event_gives_its_code() -> None:
    raw_events, schema = split_body(fixture_body("subscription_validation.json"), "application/json")
    envelope = read_envelope(raw_events[0], schema)
    assert envelope.type == VALIDATION_EVENT_TYPE
    assert validation_code(envelope) == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"


@pytest.mark.parametrize(
    "data", [{}, {"validationCode": ""}, {"validationCode": 42}, {"validationCode": "x" * 513}, None]
)
def test_subscription_validation_without_a_usable_code_is_rejected(data: Any) -> None:
    raw = load("subscription_validation.json")[0]
    raw["data"] = data
    envelope = read_envelope(raw, "eventgrid")
    with pytest.raises(InvalidEventError, match="validationCode"):
        validation_code(envelope)


def test_event_time_without_offset_is_taken_as_utc() -> None:
    raw = current_event()
    raw["eventTime"] = "2024-05-14T10:33:02"
    del raw["data"]["recordingStartTime"]  # the event time is then the only time the event gives
    jobs = plan_raw(raw)
    assert jobs[0].event_time == datetime(2024, 5, 14, 10, 33, 2, tzinfo=UTC)
    assert jobs[0].expires_at == datetime(2024, 5, 15, 10, 33, 2, tzinfo=UTC)


RECORDING_END = datetime(2024, 5, 14, 9, 12, 31, 204000, tzinfo=UTC) + timedelta(milliseconds=4_813_240)


def test_retention_counts_from_the_earliest_time_the_event_gives() -> None:
    """The sample's recording ended 18 s before the event was published: ACS's clock started then."""
    assert RECORDING_END < EVENT_TIME
    jobs = plan_body(fixture_body("eventgrid_current.json"), retention=48)
    assert {j.expires_at for j in jobs} == {RECORDING_END + timedelta(hours=48)}


def test_recording_expiration_time_is_the_deadline_when_it_is_earlier() -> None:
    raw = current_event()
    raw["data"]["recordingExpirationTime"] = "2024-05-14T22:00:00Z"
    assert {j.expires_at for j in plan_raw(raw)} == {datetime(2024, 5, 14, 22, 0, tzinfo=UTC)}


def test_a_recording_expiration_time_later_than_retention_does_not_extend_the_deadline() -> None:
    raw = current_event()
    raw["data"]["recordingExpirationTime"] = "2024-05-20T00:00:00Z"
    assert {j.expires_at for j in plan_raw(raw)} == {RECORDING_END + timedelta(hours=24)}


def test_a_cloudevent_without_time_takes_its_deadline_from_the_recording_not_from_receipt() -> None:
    """Event Grid may deliver hours late; the time of receipt must not push the deadline past ACS's."""
    raw = json.loads(fixture_body("cloudevents_single.json"))
    del raw["time"]
    received = datetime(2024, 5, 14, 18, 0, tzinfo=UTC)  # delivered hours after the recording ended
    raw_events, schema = split_body(json.dumps(raw).encode(), "application/cloudevents+json")
    event = parse_recording_event(read_envelope(raw_events[0], schema), received=received)
    jobs = plan_jobs(event, ACS_ENDPOINT, 24, POLICY)
    assert {j.expires_at for j in jobs} == {RECORDING_END + timedelta(hours=24)}
    assert {j.event_time for j in jobs} == {received}


def test_an_event_with_no_time_at_all_counts_from_receipt() -> None:
    raw = json.loads(fixture_body("cloudevents_single.json"))
    del raw["time"], raw["data"]["recordingStartTime"]
    received = datetime(2024, 5, 14, 18, 0, tzinfo=UTC)
    raw_events, schema = split_body(json.dumps(raw).encode(), "application/cloudevents+json")
    event = parse_recording_event(read_envelope(raw_events[0], schema), received=received)
    assert {j.expires_at for j in plan_jobs(event, ACS_ENDPOINT, 24, POLICY)} == {received + timedelta(hours=24)}


# --- parse_subject ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "identity"),
    [
        ("/recording/call/c1", RecordingIdentity("c1")),
        ("/recording/call/c1/", RecordingIdentity("c1")),
        ("/recording/call/c1/serverCallId/s1", RecordingIdentity("c1", "s1")),
        ("/recording/call/c1/recordingId/r1", RecordingIdentity("c1", None, "r1")),
        ("/recording/call/c1/serverCallId/s1/recordingId/r1", RecordingIdentity("c1", "s1", "r1")),
    ],
)
def test_parse_subject_shapes(subject: str, identity: RecordingIdentity) -> None:
    assert parse_subject(subject) == identity


@pytest.mark.parametrize(
    "subject",
    [
        None,
        "",
        "/recording/call/",
        "/recordings/call/c1",
        "recording/call/c1",
        "/calling/call/c1",
        "/recording/call/c1/recordingId/r1/serverCallId/s1",
        "/recording/call/c1/somethingElse/x",
        "/recording/call/c1/serverCallId/",
    ],
)
def test_parse_subject_rejects_other_shapes(subject: str | None) -> None:
    with pytest.raises(InvalidEventError, match=r"subject is not /recording/call/"):
        parse_subject(subject)


# --- bad bodies and envelopes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe\x00", "body is not JSON"),
        (b"", "body is not JSON"),
        (b"[]", "empty event array"),
        (b"[1, 2]", "event object"),
        (b'["a"]', "event object"),
        (b'[{"id": "1"}, null]', "event object"),
        (b"null", "event object"),
        (b'"text"', "event object"),
    ],
)
def test_split_body_rejects_bad_bodies(body: bytes, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        split_body(body, "application/json")


def test_read_envelope_rejects_a_non_object() -> None:
    with pytest.raises(InvalidEventError, match="JSON object"):
        read_envelope(["not", "an", "object"], "eventgrid")


@pytest.mark.parametrize("field", ["id", "eventType", "subject", "eventTime", "dataVersion"])
def test_event_grid_envelope_missing_a_field_is_rejected_by_name(field: str) -> None:
    raw = current_event()
    del raw[field]
    with pytest.raises(InvalidEventError, match=rf"lacks string field\(s\): {field}"):
        read_envelope(raw, "eventgrid")


@pytest.mark.parametrize("field", ["id", "eventType", "eventTime"])
@pytest.mark.parametrize("value", ["", 42, None])
def test_event_grid_envelope_with_empty_or_non_string_field_is_rejected(field: str, value: Any) -> None:
    raw = current_event()
    raw[field] = value
    with pytest.raises(InvalidEventError, match=field):
        read_envelope(raw, "eventgrid")


@pytest.mark.parametrize("field", ["id", "source", "type", "specversion"])
def test_cloudevents_envelope_missing_a_field_is_rejected_by_name(field: str) -> None:
    raw = load("cloudevents_single.json")
    del raw[field]
    with pytest.raises(InvalidEventError, match=field):
        read_envelope(raw, "cloudevents")


@pytest.mark.parametrize("value", ["not-a-date", "2024-13-45T99:00:00Z", "yesterday"])
def test_garbage_event_time_is_rejected_naming_event_time(value: str) -> None:
    raw = current_event()
    raw["eventTime"] = value
    with pytest.raises(InvalidEventError, match="eventTime"):
        read_envelope(raw, "eventgrid")


def test_garbage_cloudevents_time_is_rejected_naming_time() -> None:
    raw = load("cloudevents_single.json")
    raw["time"] = "garbage"
    with pytest.raises(InvalidEventError, match=r"\btime\b"):
        read_envelope(raw, "cloudevents")


def test_cloudevents_subject_missing_is_rejected_at_parse() -> None:
    raw = load("cloudevents_single.json")
    del raw["subject"]
    envelope = read_envelope(raw, "cloudevents")
    with pytest.raises(InvalidEventError, match="subject"):
        parse_recording_event(envelope)


def test_subject_not_under_recording_call_is_rejected() -> None:
    raw = current_event()
    raw["subject"] = f"/calling/call/{CALL}"
    with pytest.raises(InvalidEventError, match=r"subject is not /recording/call/.*/calling/call/"):
        plan_raw(raw)


# --- bad data -------------------------------------------------------------------------------------


NOWHERE = r"no recordingStorageInfo\.recordingChunks, and storageType is not blobstorage"


def _with_data(mutate: Any) -> dict[str, Any]:
    raw = current_event()
    mutate(raw["data"])
    return raw


def _chunks(data: dict[str, Any]) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = data["recordingStorageInfo"]["recordingChunks"]
    return chunks


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("recordingStorageInfo"), NOWHERE),
        (lambda d: d.update(recordingStorageInfo=None), NOWHERE),
        (lambda d: d["recordingStorageInfo"].pop("recordingChunks"), NOWHERE),
        (lambda d: _chunks(d).clear(), NOWHERE),
        (lambda d: _chunks(d)[0].update(index=-1), r"recordingChunks\.0\.index: .*greater than or equal to 0"),
        (lambda d: _chunks(d)[1].update(index=0), r"recordingChunks: .*two chunks share one index"),
        (lambda d: _chunks(d)[0].pop("documentId"), r"recordingChunks\.0\.documentId: Field required"),
        (lambda d: _chunks(d)[0].update(documentId="   "), r"recordingChunks\.0\.documentId"),
        (lambda d: _chunks(d)[0].update(index="first"), r"recordingChunks\.0\.index"),
        (lambda d: _chunks(d)[0].update(index="1"), r"recordingChunks\.0\.index: Input should be a valid integer"),
        (lambda d: _chunks(d)[0].update(index=True), r"recordingChunks\.0\.index: Input should be a valid integer"),
        (lambda d: _chunks(d)[0].update(index=100_001), r"recordingChunks\.0\.index: .*less than or equal"),
        (lambda d: _chunks(d)[0].update(documentId=12345), r"recordingChunks\.0\.documentId: .*valid string"),
        (
            lambda d: _chunks(d)[0].update(document_id="other"),
            r"documentId is given twice, as documentId and document_id",
        ),
        (lambda d: d.update(RecordingStorageInfo={}), r"recordingStorageInfo is given twice"),
        (lambda d: d.update(recordingDurationMs="4813240"), r"recordingDurationMs: Input should be a valid integer"),
        (lambda d: d.update(recordingDurationMs=-5), r"recordingDurationMs"),
        (lambda d: d.update(recordingStartTime="not a time"), r"recordingStartTime"),
        (lambda d: d.update(recordingStorageInfo=[]), r"recordingStorageInfo"),
    ],
)
def test_invalid_data_is_rejected_naming_the_field(mutate: Any, message: str) -> None:
    raw = _with_data(mutate)
    with pytest.raises(InvalidEventError, match=message) as info:
        plan_raw(raw)
    assert "8d1b0a0e-2f35-4a9c-9a4b-1f5e0c6d7a01" in str(info.value)


@pytest.mark.parametrize("data", [None, "text", [1, 2]])
def test_data_that_is_not_an_object_is_rejected(data: Any) -> None:
    raw = current_event()
    raw["data"] = data
    with pytest.raises(InvalidEventError, match="invalid data"):
        plan_raw(raw)


@pytest.mark.parametrize(
    ("present", "absent"), [("contentLocation", "metadataLocation"), ("metadataLocation", "contentLocation")]
)
def test_chunk_with_only_one_of_content_and_metadata_location_is_rejected(present: str, absent: str) -> None:
    raw = current_event()
    chunk = raw["data"]["recordingStorageInfo"]["recordingChunks"][0]
    del chunk[absent]
    assert present in chunk
    with pytest.raises(InvalidEventError, match=rf"chunk {DOC0}: contentLocation and metadataLocation"):
        plan_raw(raw)


def test_an_unsafe_chunk_rejects_the_whole_event() -> None:
    raw = current_event()
    raw["data"]["recordingStorageInfo"]["recordingChunks"][1]["documentId"] = "../escape"
    with pytest.raises(InvalidEventError, match="documentId"):
        plan_raw(raw)


# --- spellings -------------------------------------------------------------------------------------


def test_an_event_grid_envelope_is_read_in_snake_and_pascal_case() -> None:
    raw = current_event()
    snake = {"event_type": raw.pop("eventType"), "event_time": raw.pop("eventTime"), **raw}
    snake["data_version"] = snake.pop("dataVersion")
    pascal = {key[:1].upper() + key[1:]: value for key, value in current_event().items()}
    for spelled in (snake, pascal):
        envelope = read_envelope(spelled, "eventgrid")
        assert (envelope.type, envelope.time, envelope.id) == (RECORDING_EVENT_TYPE, EVENT_TIME, current_event()["id"])
        assert plan_raw(spelled) == plan_raw(current_event())


def test_a_field_spelled_twice_the_same_way_is_read_once_and_two_ways_is_refused() -> None:
    raw = {**current_event(), "event_type": RECORDING_EVENT_TYPE}
    assert read_envelope(raw, "eventgrid").type == RECORDING_EVENT_TYPE
    raw["event_type"] = "Microsoft.Communication.SomethingElse"
    with pytest.raises(InvalidEventError, match="eventType is given twice, as eventType and event_type"):
        read_envelope(raw, "eventgrid")


def test_cloudevents_attributes_are_read_only_as_the_spec_spells_them() -> None:
    """CloudEvents 1.0 attribute names are lower case; azure-core's CloudEvent.from_dict reads only those."""
    raw = json.loads(fixture_body("cloudevents_single.json"))
    raw = raw if isinstance(raw, dict) else raw[0]
    raw["Type"] = raw.pop("type")
    with pytest.raises(InvalidEventError, match="lacks string field"):
        read_envelope(raw, "cloudevents")
