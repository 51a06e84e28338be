"""The ChunkQueue contract, asserted alike of the in-memory fake and of StorageChunkQueue on Azurite.

What the host will read is checked too: the real queue's messages decode as host.json's messageEncoding says.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devtools.devstack import Azurite
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.ports import ChunkQueue
from recording_pipeline.core.quarantine import QuarantineRecord, job_text_of
from recording_pipeline.edges.chunk_queue import MESSAGE_ENCODING, StorageChunkQueue
from tests.support.fakes import FakeQueue
from tests.support.stack import REPO, Stack

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


def job(index: int) -> RecordingChunk:
    doc = f"d{index}"
    return RecordingChunk(
        event_id="e1",
        event_time=NOW,
        expires_at=NOW + timedelta(hours=24),
        call_id="c1",
        recording_id="x",
        recording_key="r-x",
        chunk_index=index,
        document_id=doc,
        content_url=f"https://x.asm.skype.com/v1/objects/{doc}/content/video",
        metadata_url=f"https://x.asm.skype.com/v1/objects/{doc}/content/acsmetadata",
    )


@dataclass
class Subject:
    queue: ChunkQueue
    raw: QueueClient | None  # the real queue as the host reads it; None for the fake

    async def visible(self) -> list[RecordingChunk]:
        if self.raw is None:
            assert isinstance(self.queue, FakeQueue)
            return [decode_job(text) for text in self.queue.visible_jobs()]
        encoding = json.loads((REPO / "host.json").read_text())["extensions"]["queues"]["messageEncoding"]
        assert encoding == MESSAGE_ENCODING == "base64"
        messages = await self.raw.peek_messages(max_messages=32)
        return [decode_job(base64.b64decode(str(m.content), validate=True)) for m in messages]


@pytest.fixture(params=["fake", "azurite"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "fake":
        yield Subject(FakeQueue(), None)
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    name = f"q-{uuid.uuid4().hex[:20]}"
    queue = StorageChunkQueue(QueueServiceClient.from_connection_string(azurite.connection_string), name)
    await queue.ensure()
    raw = QueueClient.from_connection_string(azurite.connection_string, name)
    async with raw:
        yield Subject(queue, raw)
    await queue.close()


async def test_enqueued_jobs_are_what_the_host_reads(subject: Subject) -> None:
    assert await subject.queue.enqueue([job(0), job(1), job(2)]) == 3
    assert sorted(j.chunk_index for j in await subject.visible()) == [0, 1, 2]
    assert (await subject.visible())[0] == job((await subject.visible())[0].chunk_index)


async def test_a_job_put_back_for_later_is_not_visible_now(subject: Subject) -> None:
    await subject.queue.enqueue_later(job(7), 60)
    assert await subject.visible() == []
    await subject.queue.enqueue_later(job(8), 0)
    assert [j.chunk_index for j in await subject.visible()] == [8]


async def test_poison_records_are_counted_read_and_removed(subject: Subject) -> None:
    queue = subject.queue
    assert await queue.poison_count() == 0
    record = QuarantineRecord("AcsTransientError: 503", 4, NOW, json.loads(job(3).model_dump_json()))
    await queue.send_poison(record)
    assert await queue.poison_count() == 1
    [message] = [m async for m in queue.poison_messages(10)]
    text = job_text_of(message.content)
    assert text is not None and decode_job(text) == job(3)
    await message.remove()
    assert await queue.poison_count() == 0
    assert [m async for m in queue.poison_messages(10)] == []


async def test_enqueued_messages_decode_the_way_host_json_says(stack: Stack) -> None:
    """Read a message the app's own runtime wrote, raw, and decode it as the Functions host would."""
    encoding = json.loads((REPO / "host.json").read_text())["extensions"]["queues"].get("messageEncoding", "base64")
    assert encoding == MESSAGE_ENCODING
    now = datetime.now(UTC)
    job = RecordingChunk(
        event_id="e1",
        event_time=now,
        expires_at=now + timedelta(hours=24),
        call_id="c1",
        recording_id="x",
        recording_key="r-x",
        chunk_index=0,
        document_id="d1",
        content_url="https://x.asm.skype.com/v1/objects/d1/content/video",
        metadata_url="https://x.asm.skype.com/v1/objects/d1/content/acsmetadata",
    )
    runtime = await stack.runtime()
    try:
        await runtime.queue.enqueue([job])
    finally:
        await runtime.close()
    raw_client = QueueClient.from_connection_string(stack.azurite.connection_string, stack.queue)
    async with raw_client:
        messages = [m async for m in raw_client.receive_messages(max_messages=1)]
    raw = str(messages[0].content)
    host_decoded = base64.b64decode(raw, validate=True) if encoding == "base64" else raw.encode()
    assert decode_job(host_decoded) == job
