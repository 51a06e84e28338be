"""The webhook's status policy on in-memory edges: what Event Grid is answered, and what was made durable first.

Event Grid retries 408, 429 and 5xx and dead-letters 400 and 413, so each answer
says whether to try the delivery again: 200 only once every job is on the queue
and every bad event is kept; 400 when nothing in it could ever be processed;
413 over the limits; 503 when the queue or the archive could not be written.
The same policy runs against Azurite in tests/e2e/test_webhook.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from recording_pipeline.app.audit import ArchiveAudit
from recording_pipeline.app.webhook import WebhookConfig, WebhookRequest, WebhookResponse, handle_delivery
from recording_pipeline.core.custody import ExternalRecord
from recording_pipeline.core.errors import DeliveryAuthError, DeliveryAuthUnavailable, StorageError
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.naming import external_name, manifest_name
from recording_pipeline.core.state import Manifest, RecordingState
from tests.support.events import ACS_ENDPOINT, CALL, DOC, POLICY, REC, chunk, raw_event
from tests.support.fakes import FakeArchive, FakeQueue
from tests.support.stack import FIXTURES

TOPIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/acs-prod"
CONFIG = WebhookConfig(ACS_ENDPOINT, 24, POLICY, max_body_bytes=64 * 1024, max_events=5)
VALIDATION: dict[str, Any] = json.loads((FIXTURES / "events" / "subscription_validation.json").read_text())[0]
CODE = VALIDATION["data"]["validationCode"]


class RefusingQueue(FakeQueue):
    async def enqueue(self, jobs: Sequence[RecordingChunk]) -> int:
        raise StorageError("the queue service refused", status=503)


class RefusingArchive(FakeArchive):
    async def create(self, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        raise StorageError("the archive refused", status=503)


class Token:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[str | None] = []

    async def check(self, authorization: str | None) -> dict[str, Any]:
        self.seen.append(authorization)
        if self.error is not None:
            raise self.error
        return {"aud": "api://recordings"}


class Edges:
    def __init__(self, queue: FakeQueue | None = None, archive: FakeArchive | None = None) -> None:
        self.queue = queue or FakeQueue()
        self.archive = archive or FakeArchive("recordings")
        self.state = FakeArchive("recordings-state")
        self.audit = ArchiveAudit(self.archive, self.state)

    async def deliver(
        self, body: Any, config: WebhookConfig = CONFIG, method: str = "POST", headers: dict[str, str] | None = None
    ) -> WebhookResponse:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = WebhookRequest(method, {"Content-Type": "application/json", **(headers or {})}, raw)
        return await handle_delivery(request, config, self.queue, self.audit)

    def jobs(self) -> list[RecordingChunk]:
        return [decode_job(text) for text, _delay in self.queue.messages]

    def rejected(self) -> list[dict[str, Any]]:
        return [json.loads(b.data) for n, b in self.archive.blobs.items() if n.startswith("_rejected/")]


@pytest.fixture
def edges() -> Edges:
    return Edges()


def bad_event(**overrides: Any) -> dict[str, Any]:
    return {**raw_event(subject="/recording/call/../x"), "id": "bad-1", **overrides}


async def test_200_once_every_job_of_every_event_is_on_the_queue(edges: Edges) -> None:
    two = raw_event(chunks=[chunk(DOC, 0), chunk("0-eus-d12-2", 1, "SessionEnded")])
    response = await edges.deliver([two])
    assert (response.status, response.body) == (200, {"enqueued": 2, "external": 0, "ignored": 0, "rejected": []})
    assert [(j.call_id, j.chunk_index) for j in edges.jobs()] == [(CALL, 0), (CALL, 1)]
    assert edges.archive.blobs == {}


async def test_400_when_the_body_is_not_an_event_array(edges: Edges) -> None:
    response = await edges.deliver(b"{not json")
    assert response.status == 400 and "error" in (response.body or {})
    assert edges.queue.messages == [] and edges.archive.blobs == {}


async def test_400_when_every_event_was_rejected_and_each_is_kept_with_its_reason(edges: Edges) -> None:
    response = await edges.deliver([bad_event(), bad_event(id="bad-2")])
    assert response.status == 400
    assert response.body is not None and response.body["error"] == "every event in the delivery was rejected"
    assert len(response.body["rejected"]) == 2
    kept = edges.rejected()
    assert sorted(k["event"]["id"] for k in kept) == ["bad-1", "bad-2"]
    assert all(k["reason"] and k["receivedAt"] for k in kept)
    assert edges.queue.messages == []


async def test_200_when_good_and_bad_events_are_mixed_the_good_planned_the_bad_kept(edges: Edges) -> None:
    response = await edges.deliver([raw_event(), bad_event()])
    assert response.status == 200 and response.body is not None
    assert response.body["enqueued"] == 1 and len(response.body["rejected"]) == 1
    assert len(edges.jobs()) == 1 and [k["event"]["id"] for k in edges.rejected()] == ["bad-1"]


async def test_413_over_the_size_or_the_event_count_and_nothing_is_written(edges: Edges) -> None:
    too_big = await edges.deliver(b"[" + b" " * CONFIG.max_body_bytes + b"]")
    too_many = await edges.deliver([raw_event()] * (CONFIG.max_events + 1))
    assert (too_big.status, too_many.status) == (413, 413)
    assert edges.queue.messages == [] and edges.archive.blobs == {}


async def test_503_when_the_queue_refuses_so_event_grid_retries() -> None:
    edges = Edges(queue=RefusingQueue())
    response = await edges.deliver([raw_event()])
    assert response.status == 503 and response.body is not None and "retry later" in response.body["error"]


async def test_503_when_a_rejected_event_cannot_be_kept_and_no_job_is_sent_first() -> None:
    edges = Edges(archive=RefusingArchive("recordings"))
    response = await edges.deliver([raw_event(), bad_event()])
    assert response.status == 503
    assert edges.queue.messages == [], "the jobs go only once the bad events are kept"


async def test_bring_your_own_storage_is_200_with_its_external_record_and_manifest(edges: Edges) -> None:
    response = await edges.deliver([raw_event(storageType="blobstorage")])
    assert (response.status, response.body) == (200, {"enqueued": 0, "external": 1, "ignored": 0, "rejected": []})
    assert edges.queue.messages == []
    record = ExternalRecord.model_validate_json(edges.archive.blobs[external_name(CALL, f"r-{REC}")].data)
    assert (record.call_id, record.recording_key, record.topic) == (CALL, f"r-{REC}", TOPIC)
    manifest = Manifest.from_json(json.loads(edges.state.blobs[manifest_name(CALL, f"r-{REC}")].data))
    assert manifest.state is RecordingState.EXTERNAL


async def test_other_event_types_are_ignored_with_200_never_rejected(edges: Edges) -> None:
    other = {**raw_event(), "eventType": "Microsoft.Communication.CallEnded"}
    response = await edges.deliver([other])
    assert (response.status, response.body) == (200, {"enqueued": 0, "external": 0, "ignored": 1, "rejected": []})
    assert edges.archive.blobs == {} and edges.queue.messages == []


async def test_an_event_from_another_acs_resource_is_rejected() -> None:
    edges = Edges()
    config = WebhookConfig(ACS_ENDPOINT, 24, POLICY, acs_resource_id=TOPIC.replace("acs-prod", "acs-other"))
    response = await edges.deliver([raw_event()], config)
    assert response.status == 400 and edges.queue.messages == []
    assert "another ACS resource" in edges.rejected()[0]["reason"]


async def test_the_subscription_validation_handshake_is_answered_alone(edges: Edges) -> None:
    alone = await edges.deliver([VALIDATION])
    assert (alone.status, alone.body) == (200, {"validationResponse": CODE})
    mixed = await edges.deliver([VALIDATION, raw_event()])
    assert mixed.status == 200 and mixed.body is not None
    assert mixed.body["enqueued"] == 1 and mixed.body["rejected"] == [
        "a subscription validation event must be delivered alone"
    ]


async def test_the_cloudevents_handshake_and_other_methods(edges: Edges) -> None:
    options = await edges.deliver(b"", method="OPTIONS", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.status == 200 and options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert (await edges.deliver(b"", method="OPTIONS")).status == 400
    get = await edges.deliver(b"", method="GET")
    assert get.status == 405 and get.headers["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize(
    ("error", "status"),
    [(None, 200), (DeliveryAuthError("no bearer token"), 401), (DeliveryAuthUnavailable("keys unreachable"), 503)],
)
async def test_a_delivery_token_is_checked_before_the_body_is_read(
    edges: Edges, error: Exception | None, status: int
) -> None:
    token = Token(error)
    config = WebhookConfig(ACS_ENDPOINT, 24, POLICY, delivery_auth=token)
    response = await edges.deliver([raw_event()], config, headers={"Authorization": "Bearer abc"})
    assert response.status == status and token.seen == ["Bearer abc"]
    assert len(edges.queue.messages) == (1 if status == 200 else 0)
    if status == 503:
        assert response.headers["Retry-After"] == "60"
