"""Property-based fuzzing of the event parser and the webhook handler.

Whatever arrives: no exception escapes, no 5xx, and nothing reaches the queue
unless it is a well-formed recording event whose ids and URLs are safe. The
sinks here record what the handler hands them; the real queue and archive are
exercised by test_webhook.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recording_pipeline.app.webhook import WebhookConfig, WebhookRequest, handle_delivery
from recording_pipeline.core.custody import ExternalRecord
from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.events import parse_recording_event, read_envelope, split_body
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.naming import check_id
from recording_pipeline.core.urls import UrlPolicy

POLICY = UrlPolicy((".asm.skype.com",), allow_http=False, acs_endpoint_host="contoso.communication.azure.com")
CONFIG = WebhookConfig("https://contoso.communication.azure.com", 24, POLICY, max_body_bytes=256 * 1024, max_events=50)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = {
    "id": "7f6b1c2e-0000-4000-8000-000000000001",
    "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/acs",
    "subject": "/recording/call/6a6e0b6e-0000-4000-8000-000000000000/serverCallId/c2VydmVy/recordingId/eyJyZWMifQ",
    "eventType": "Microsoft.Communication.RecordingFileStatusUpdated",
    "dataVersion": "1.0",
    "metadataVersion": "1",
    "eventTime": "2026-11-23T10:00:00Z",
    "data": {
        "recordingStorageInfo": {
            "recordingChunks": [
                {
                    "documentId": "0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8",
                    "index": 0,
                    "endReason": "SessionEnded",
                    "contentLocation": "https://storage.asm.skype.com/v1/objects/0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8/content/video",
                    "metadataLocation": "https://storage.asm.skype.com/v1/objects/0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8/content/acsmetadata",
                    "deleteLocation": "https://us-storage.asm.skype.com/v1/objects/0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8",
                }
            ]
        },
        "recordingStartTime": "2026-11-23T09:00:00Z",
        "recordingDurationMs": 3600000,
        "sessionEndReason": "CallEnded",
    },
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
hostile_strings = st.sampled_from(
    [
        "",
        " ",
        "..",
        "../../etc/passwd",
        "a/b",
        "a\\b",
        "a\nb",
        "\x00",
        "x" * 300,
        "http://127.0.0.2/steal",
        "https://evil.com/x.asm.skype.com",
        "https://x.asm.skype.com.evil.com/",
        "https://u@x.asm.skype.com/",
        "https://x.asm.skype.com:8443/",
        "https://10.0.0.1/",
        "javascript:alert(1)",
        "/recording/call/",
        "/recording/call/a/serverCallId/b/recordingId/c/extra",
        "2026-13-45T99:99:99Z",
        "NaN",
        "-1",
        "1e999",
    ]
) | st.text(max_size=60)

PATHS = [
    ("id",),
    ("subject",),
    ("eventType",),
    ("eventTime",),
    ("topic",),
    ("data",),
    ("data", "recordingStorageInfo"),
    ("data", "recordingStorageInfo", "recordingChunks"),
    ("data", "recordingStartTime"),
    ("data", "recordingDurationMs"),
    ("data", "storageType"),
    *[
        ("data", "recordingStorageInfo", "recordingChunks", 0, key)
        for key in ("documentId", "index", "endReason", "contentLocation", "metadataLocation", "deleteLocation")
    ],
]


def _mutate(event: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(event)
    target: Any = mutated
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return mutated


class Sinks:
    def __init__(self) -> None:
        self.jobs: list[RecordingChunk] = []
        self.rejected: list[str] = []

    async def enqueue(self, jobs: list[RecordingChunk]) -> int:
        self.jobs.extend(jobs)
        return len(jobs)

    async def keep_rejected(self, raw: Any, reason: str, received: datetime) -> None:
        self.rejected.append(reason)

    async def record_external(self, evidence: ExternalRecord) -> None:
        pass


def _deliver(body: bytes, content_type: str = "application/json") -> tuple[int, Sinks]:
    sinks = Sinks()
    response = asyncio.run(
        handle_delivery(WebhookRequest("POST", {"Content-Type": content_type}, body), CONFIG, sinks, sinks)
    )
    return response.status, sinks


def _assert_safe(jobs: list[RecordingChunk]) -> None:
    for job in jobs:
        for url in (job.content_url, job.metadata_url, job.delete_url):
            if url is not None:
                POLICY.check(url)
        for value in (job.call_id, job.document_id, job.recording_id, job.server_call_id):
            if value is not None:
                check_id(value, "id")


def test_the_valid_event_is_accepted() -> None:
    status, sinks = _deliver(json.dumps([VALID]).encode())
    assert status == 200 and len(sinks.jobs) == 1


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(body: bytes) -> None:
    status, sinks = _deliver(body)
    assert status in (200, 400, 413)
    _assert_safe(sinks.jobs)


@FUZZ
@given(json_values)
def test_arbitrary_json(payload: Any) -> None:
    for content_type in ("application/json", "application/cloudevents-batch+json"):
        status, sinks = _deliver(json.dumps(payload).encode(), content_type)
        assert status in (200, 400, 413)
        assert sinks.jobs == []


@FUZZ
@given(st.sampled_from(PATHS), json_values | hostile_strings)
def test_mutated_recording_events(path: tuple[Any, ...], value: Any) -> None:
    event = _mutate(VALID, path, value)
    status, sinks = _deliver(json.dumps([event]).encode())
    assert status in (200, 400)
    if status == 400:
        assert sinks.jobs == [] and len(sinks.rejected) == 1
    _assert_safe(sinks.jobs)


@FUZZ
@given(
    st.lists(st.sampled_from(PATHS), min_size=1, max_size=3),
    st.lists(json_values | hostile_strings, min_size=3, max_size=3),
)
def test_batches_mixing_good_and_bad_events(paths: list[tuple[Any, ...]], values: list[Any]) -> None:
    events = [VALID] + [_mutate(VALID, path, value) for path, value in zip(paths, values, strict=False)]
    status, sinks = _deliver(json.dumps(events).encode())
    assert status == 200  # the good event carries the batch
    assert len(sinks.jobs) + len(sinks.rejected) >= 1
    _assert_safe(sinks.jobs)


@FUZZ
@given(st.sampled_from(PATHS), json_values | hostile_strings)
def test_parser_raises_only_invalid_event_error(path: tuple[Any, ...], value: Any) -> None:
    raw = json.dumps([_mutate(VALID, path, value)]).encode()
    try:
        events, schema = split_body(raw, "application/json")
        parse_recording_event(read_envelope(events[0], schema))
    except InvalidEventError as exc:
        assert str(exc)
