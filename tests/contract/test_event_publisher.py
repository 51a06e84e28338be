"""The EventPublisher contract, asserted alike of the in-memory fake and of EventGridPublisher (azure-eventgrid's
async client) against a loopback topic that keeps what the SDK really sends: the CloudEvents batch, its headers,
its retries; and the sample subscriber fed those very events through azure.functions' own Event Grid converter."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from recording_pipeline.core.errors import PublishError
from recording_pipeline.core.outbound import EventType, OutboundEvent, event_id
from recording_pipeline.core.ports import EventPublisher
from recording_pipeline.core.settings import OutboundEventsSettings
from recording_pipeline.edges.event_publisher import RETRIES, EventGridPublisher
from tests.support.event_receiver import EventReceiver
from tests.support.fakes import FakePublisher
from tests.support.stack import REPO

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
ARCHIVE = "https://archive.blob.core.windows.net/recordings"


def event(kind: EventType, index: int, **data: Any) -> OutboundEvent:
    identity = ("call-1", "r-rec1", index, f"doc-{index}")
    body = {"callId": "call-1", "recordingKey": "r-rec1", "chunkIndex": index, "documentId": f"doc-{index}", **data}
    return OutboundEvent(
        event_id(kind, *identity), kind, ARCHIVE, f"call-1/r-rec1/{index:05d}-doc-{index}.mp4", NOW, body
    )


ARCHIVED = event(
    EventType.CHUNK_ARCHIVED,
    0,
    size=1234,
    sha256="ab" * 32,
    mediaUrl=f"{ARCHIVE}/call-1/r-rec1/00000-doc-0.mp4",
    secondsLeftAtArchive=86000,
)
LOST = event(EventType.CHUNK_LOST, 1, reason="404: gone")


class Topic:
    """One side of the contract: a publisher, and what its topic received."""

    def __init__(self, publisher: EventPublisher, received: Any, fail: Any) -> None:
        self.publisher, self.received, self.fail = publisher, received, fail


@pytest.fixture
async def receiver() -> AsyncIterator[EventReceiver]:
    topic = await EventReceiver().start()
    yield topic
    await topic.stop()


@pytest.fixture(params=["fake", "event-grid"])
async def topic(request: pytest.FixtureRequest, receiver: EventReceiver) -> AsyncIterator[Topic]:
    if request.param == "fake":
        fake = FakePublisher()

        def fake_fail() -> None:
            fake.fail_next = 1

        yield Topic(fake, lambda: [e.id for e in fake.events], fake_fail)
        return
    real = EventGridPublisher.open(OutboundEventsSettings(receiver.endpoint, receiver.key))

    def real_fail() -> None:
        receiver.fail_next = [503] * (RETRIES + 1)

    try:
        yield Topic(real, lambda: [e["id"] for e in receiver.delivered()], real_fail)
    finally:
        await real.close()


async def test_a_batch_is_delivered_whole(topic: Topic) -> None:
    await topic.publisher.publish([ARCHIVED, LOST])
    assert topic.received() == [ARCHIVED.id, LOST.id]


async def test_a_topic_that_keeps_failing_is_a_publish_error(topic: Topic) -> None:
    topic.fail()
    with pytest.raises(PublishError):
        await topic.publisher.publish([ARCHIVED])
    assert topic.received() == []


async def test_nothing_to_publish_sends_nothing(topic: Topic) -> None:
    await topic.publisher.publish([])
    assert topic.received() == []


# --- what azure-eventgrid really sends ---------------------------------------------------------------------------


async def _publish(receiver: EventReceiver, *events: OutboundEvent) -> None:
    publisher = EventGridPublisher.open(OutboundEventsSettings(receiver.endpoint, receiver.key))
    try:
        await publisher.publish(list(events))
    finally:
        await publisher.close()


async def test_the_sdk_sends_a_cloudevents_batch_with_the_key(receiver: EventReceiver) -> None:
    await _publish(receiver, ARCHIVED, LOST)
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/api/events" and "api-version" in request.query
    assert request.headers["Content-Type"].startswith("application/cloudevents-batch+json")
    assert request.headers["aeg-sas-key"] == receiver.key
    sent = request.events()
    assert [e["specversion"] for e in sent] == ["1.0", "1.0"]
    first = sent[0]
    assert {k: first[k] for k in ("id", "type", "source", "subject", "datacontenttype")} == {
        "id": ARCHIVED.id,
        "type": "RecordingArchive.ChunkArchived",
        "source": ARCHIVE,
        "subject": "call-1/r-rec1/00000-doc-0.mp4",
        "datacontenttype": "application/json",
    }
    assert datetime.fromisoformat(first["time"].replace("Z", "+00:00")) == NOW
    assert first["data"] == ARCHIVED.data


async def test_transient_failures_are_retried_by_the_client(receiver: EventReceiver) -> None:
    receiver.fail_next = [503, 500]
    await _publish(receiver, ARCHIVED)
    assert [r.status for r in receiver.requests] == [503, 500, 200]
    assert [e["id"] for e in receiver.delivered()] == [ARCHIVED.id]


async def test_throttling_without_retry_after_is_left_to_the_outbox(receiver: EventReceiver) -> None:
    """azure-core retries a POST only on 500, 503, 504 (or with Retry-After): a bare 429 is the caller's to keep."""
    receiver.fail_next = [429]
    with pytest.raises(PublishError, match="429"):
        await _publish(receiver, ARCHIVED)
    assert [r.status for r in receiver.requests] == [429]


async def test_a_refused_key_is_not_retried(receiver: EventReceiver) -> None:
    publisher = EventGridPublisher.open(OutboundEventsSettings(receiver.endpoint, "wrong-key"))
    try:
        with pytest.raises(PublishError, match="401"):
            await publisher.publish([ARCHIVED])
    finally:
        await publisher.close()
    assert [r.status for r in receiver.requests] == [401]


async def test_a_topic_that_is_down_gives_up_after_the_clients_retries(receiver: EventReceiver) -> None:
    receiver.fail_next = [500] * 10
    with pytest.raises(PublishError, match="500"):
        await _publish(receiver, ARCHIVED)
    assert len(receiver.requests) == RETRIES + 1


async def test_an_unreachable_topic_is_a_publish_error() -> None:
    publisher = EventGridPublisher.open(OutboundEventsSettings("http://127.0.0.1:9/api/events", "k"))
    try:
        with pytest.raises(PublishError):
            await publisher.publish([ARCHIVED])
    finally:
        await publisher.close()


def test_the_identity_needs_a_credential() -> None:
    with pytest.raises(PublishError, match="credential"):
        EventGridPublisher.open(OutboundEventsSettings("https://t.westeurope-1.eventgrid.azure.net/api/events"))


# --- the sample subscriber --------------------------------------------------------------------------------------


def _sample() -> ModuleType:
    path = REPO / "samples" / "subscriber" / "function_app.py"
    spec = importlib.util.spec_from_file_location("sample_subscriber", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_sample_subscriber_handles_what_the_sdk_really_sent(receiver: EventReceiver) -> None:
    failed = event(EventType.CHUNK_FAILED, 2, error="AcsTransientError: 503", attempts=8)
    completed = event(EventType.RECORDING_COMPLETED, 0, chunkCount=2, size=4321)
    await _publish(receiver, ARCHIVED, LOST, failed, completed)
    await _publish(receiver, ARCHIVED)  # a redelivery: the same id
    sample = _sample()
    [function] = sample.app.get_functions()
    assert function.get_trigger().get_dict_repr()["type"] == "eventGridTrigger"
    seen = sample.SeenIds()
    summaries = []
    for raw in receiver.delivered():
        decoded = EventGridEventInConverter.decode(meta.Datum(type="json", value=json.dumps(raw)), trigger_metadata={})
        summaries.append(sample.handle(decoded, seen))
    assert summaries[0].startswith("chunk 0 of call-1/r-rec1 archived: 1234 bytes")
    assert "23.9 h before" in summaries[0]
    assert summaries[1] == "chunk 1 of call-1/r-rec1 LOST: 404: gone"
    assert summaries[2].startswith("chunk 2 of call-1/r-rec1 failed after 8 attempts")
    assert summaries[3] == "recording call-1/r-rec1 complete: 2 chunks, 4321 bytes"
    assert summaries[4] is None  # the duplicate
