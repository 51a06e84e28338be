"""The corpus of event variants in tests/fixtures/events, through the webhook on in-memory edges: both sides.

Accepted (``events/*.json``): what ACS sends today, what it may send tomorrow (fields absent or null, unknown fields
anywhere, Event Grid's own dead-letter fields), and the spellings the SDKs render (the Python SDK's ``as_dict()``
in snake_case, PascalCase). Each gives the jobs it should, and a variant of the documented event gives exactly the
jobs the documented event gives. Refused (``events/refused/*.json``): what safety rests on (URLs, ids, sizes,
indexes, a field spelled twice), each refused with its reason, answered 400 and kept whole in ``_rejected/``.
Every file in the corpus must be named below, so a new variant cannot be added without saying what it should do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from azure.eventgrid import EventGridEvent

from recording_pipeline.app.audit import ArchiveAudit
from recording_pipeline.app.webhook import WebhookConfig, WebhookRequest, WebhookResponse, handle_delivery
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.naming import DAYS_PREFIX
from tests.support.events import ACS_ENDPOINT, POLICY
from tests.support.fakes import FakeArchive, FakeQueue
from tests.support.stack import FIXTURES

EVENTS = FIXTURES / "events"
REFUSED = EVENTS / "refused"
CONFIG = WebhookConfig(ACS_ENDPOINT, 24, POLICY)
DOCUMENTED = "eventgrid_current.json"
DOC0 = "0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8"
DOC1 = "0-eus-d12-4c2f7a9e1b3d5f60718293a4b5c6d7e8"
CURRENT = [(0, DOC0, "ChunkMaximumSizeExceeded"), (1, DOC1, "SessionEnded")]

# file -> the jobs it plans, as (chunk index, documentId, endReason), or "external" (one external record, no job),
# or "validation" (the handshake).
ACCEPTED: dict[str, Any] = {
    "eventgrid_current.json": CURRENT,
    "eventgrid_batch.json": [*CURRENT, (0, DOC0, "SessionEnded")],  # a second recording's one chunk
    "cloudevents_single.json": CURRENT,
    "cloudevents_batch.json": [*CURRENT, (0, DOC0, "SessionEnded")],
    "eventgrid_legacy_document_id_only.json": [(0, "0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8", "SessionEnded")],
    "eventgrid_newer_fields.json": [(0, DOC0, "SessionEnded")],
    "eventgrid_subject_recording_id_only.json": [(0, DOC0, "SessionEnded")],
    "eventgrid_subject_server_call_only.json": [(0, DOC0, "SessionEnded")],
    "eventgrid_byos_acsstorage.json": [(0, DOC0, "SessionEnded")],
    "eventgrid_byos_blobstorage.json": "external",
    "eventgrid_byos_without_storage_info.json": "external",
    "eventgrid_sdk_as_dict.json": CURRENT,
    "eventgrid_pascal_case.json": CURRENT,
    "eventgrid_dead_lettered.json": CURRENT,
    "eventgrid_optional_fields_absent.json": [(0, DOC0, None), (1, DOC1, None)],
    "eventgrid_optional_fields_null.json": [(0, DOC0, None), (1, DOC1, None)],
    "subscription_validation.json": "validation",
}
# Variants of the documented event: the same jobs, field for field, but for what they leave out.
SAME_AS_DOCUMENTED = {
    "eventgrid_sdk_as_dict.json": set(),
    "eventgrid_pascal_case.json": set(),
    "eventgrid_dead_lettered.json": set(),
    "eventgrid_optional_fields_null.json": {
        "end_reason",
        "recording_start_time",
        "recording_duration_ms",
        "expires_at",
    },
    "eventgrid_optional_fields_absent.json": {
        "end_reason",
        "recording_start_time",
        "recording_duration_ms",
        "expires_at",
        "topic",
    },
}
# With neither the recording's start nor its duration, the deadline counts from the event's time alone.
EVENT_TIME_PLUS_A_DAY = "2024-05-15T10:33:02.751610+00:00"
# file -> the reason it is refused with (a regular expression).
REFUSED_BECAUSE = {
    "no_recording_chunks.json": r"no recordingStorageInfo\.recordingChunks, and storageType is not blobstorage",
    "content_location_on_a_foreign_host.json": r"contentLocation host 'storage\.asm\.skype\.com\.evil\.example' is not",
    "content_location_over_http.json": r"contentLocation must use https",
    "content_location_with_user_information.json": r"contentLocation must not carry user information",
    "delete_location_of_another_chunk.json": rf"deleteLocation does not name chunk {DOC0}",
    "document_id_climbs_out.json": r"documentId contains '\.\.'",
    "document_id_not_a_string.json": r"recordingChunks\.0\.documentId: Input should be a valid string",
    "index_as_a_string.json": r"recordingChunks\.1\.index: Input should be a valid integer",
    "index_out_of_range.json": r"recordingChunks\.1\.index: Input should be less than or equal to 100000",
    "two_chunks_share_an_index.json": r"recordingChunks: Value error, two chunks share one index",
    "duration_negative.json": r"recordingDurationMs: Input should be greater than or equal to 0",
    "field_given_twice_with_two_spellings.json": r"documentId is given twice, as documentId and document_id",
    "subject_not_a_recording.json": r"subject is not /recording/call/",
    "call_id_unsafe_as_a_name.json": r"callId has characters outside",
    "event_time_missing.json": r"event envelope lacks string field\(s\): eventTime",
}


class Edges:
    def __init__(self) -> None:
        self.queue = FakeQueue()
        self.archive = FakeArchive("recordings")
        self.state = FakeArchive("recordings-state")

    async def deliver(self, path: Path) -> WebhookResponse:
        body = _read(path)
        request = WebhookRequest("POST", {"Content-Type": "application/json"}, body)
        return await handle_delivery(request, CONFIG, self.queue, ArchiveAudit(self.archive, self.state))

    def jobs(self) -> list[RecordingChunk]:
        return [decode_job(text) for text, _delay in self.queue.messages]

    def kept(self, prefix: str) -> list[dict[str, Any]]:
        return [json.loads(b.data) for n, b in self.archive.blobs.items() if n.startswith(prefix)]


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.json"))


def test_every_variant_in_the_corpus_says_what_it_should_do() -> None:
    assert _names(EVENTS) == sorted(ACCEPTED)
    assert _names(REFUSED) == sorted(REFUSED_BECAUSE)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
async def test_an_accepted_variant_plans_its_jobs(name: str) -> None:
    edges = Edges()
    response = await edges.deliver(EVENTS / name)
    expected = ACCEPTED[name]
    assert response.status == 200, response.body
    if expected == "validation":
        assert response.body is not None and "validationResponse" in response.body
        return
    assert response.body is not None and response.body["rejected"] == []
    assert edges.kept("_rejected/") == []
    jobs = [(j.chunk_index, j.document_id, j.end_reason) for j in edges.jobs()]
    if expected == "external":
        assert jobs == [] and response.body["external"] == 1
        kept = [n for n in edges.archive.blobs if not n.startswith(DAYS_PREFIX)]
        filed = [n for n in edges.archive.blobs if n.startswith(DAYS_PREFIX)]
        assert len(kept) == 1 and kept[0].endswith("/external.json")  # the external record,
        assert len(filed) == 1 and filed[0].endswith(kept[0].removesuffix("/external.json"))  # filed under its day
        return
    assert sorted(jobs, key=lambda j: (j[1], j[0])) == sorted(expected, key=lambda j: (j[1], j[0]))


@pytest.mark.parametrize("name", sorted(SAME_AS_DOCUMENTED))
async def test_a_variant_of_the_documented_event_gives_its_jobs_field_for_field(name: str) -> None:
    documented, variant = Edges(), Edges()
    await documented.deliver(EVENTS / DOCUMENTED)
    await variant.deliver(EVENTS / name)
    left_out = SAME_AS_DOCUMENTED[name] | {"event_id"}
    assert _fields(variant.jobs(), left_out) == _fields(documented.jobs(), left_out)
    for job in variant.jobs():
        assert all(getattr(job, field) is None for field in left_out - {"event_id", "expires_at"})
        if "expires_at" in left_out:
            assert job.expires_at.isoformat() == EVENT_TIME_PLUS_A_DAY


def _fields(jobs: Sequence[RecordingChunk], left_out: set[str]) -> list[dict[str, Any]]:
    return [job.model_dump(exclude=left_out) for job in jobs]


def test_the_snake_case_variant_is_what_the_python_sdk_renders() -> None:
    """azure-eventgrid's EventGridEvent.as_dict() writes its attribute names; its from_dict reads them back."""
    [raw] = json.loads((EVENTS / "eventgrid_sdk_as_dict.json").read_text())
    sdk = EventGridEvent.from_dict(raw)
    assert set(sdk.as_dict()) - {"metadata_version"} == set(raw)
    assert sdk.event_type == "Microsoft.Communication.RecordingFileStatusUpdated"


@pytest.mark.parametrize("name", sorted(REFUSED_BECAUSE))
async def test_a_refused_variant_is_refused_with_its_reason_and_kept_whole(name: str) -> None:
    edges = Edges()
    response = await edges.deliver(REFUSED / name)
    assert response.status == 400 and response.body is not None
    [reason] = response.body["rejected"]
    assert _matches(REFUSED_BECAUSE[name], reason)
    [kept] = edges.kept("_rejected/")
    assert kept["reason"] == reason
    assert [kept["event"]] == json.loads(_read(REFUSED / name))
    assert edges.jobs() == []


def _matches(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None
