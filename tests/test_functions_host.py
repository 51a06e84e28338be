"""function_app.py and host.json: what the Functions host will see in Azure."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.storage.queue.aio import QueueClient

from recording_pipeline.chunk_queue import MESSAGE_ENCODING
from recording_pipeline.jobs import RecordingChunk, decode_job
from recording_pipeline.settings import DEFAULT_QUEUE_NAME

from .conftest import Stack

ROOT = Path(__file__).resolve().parent.parent
HOST = json.loads((ROOT / "host.json").read_text())


@functools.cache
def _functions() -> dict[str, list[Any]]:
    import function_app

    return {str(f.get_function_name()): f.get_bindings() for f in function_app.app.get_functions()}


def test_http_trigger_on_recording_events_with_function_auth() -> None:
    bindings = _functions()["recording_events"]
    trigger = next(b for b in bindings if b.type == "httpTrigger")
    assert trigger.route == "recording-events"
    assert {str(m.value) if hasattr(m, "value") else str(m) for m in trigger.methods} == {"POST", "OPTIONS"}
    assert trigger.auth_level == func.AuthLevel.FUNCTION
    assert HOST["extensions"]["http"]["routePrefix"] == "api"


def test_queue_trigger_on_the_chunk_queue_setting() -> None:
    bindings = _functions()["archive_recording_chunk"]
    trigger = next(b for b in bindings if b.type == "queueTrigger")
    assert trigger.queue_name == "%CHUNK_QUEUE_NAME%"
    assert trigger.connection == "AzureWebJobsStorage"
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    assert sample["Values"]["CHUNK_QUEUE_NAME"] == DEFAULT_QUEUE_NAME


def test_host_json_fits_multi_gigabyte_chunks() -> None:
    hours, minutes, seconds = (int(x) for x in HOST["functionTimeout"].split(":"))
    assert timedelta(hours=hours, minutes=minutes, seconds=seconds) >= timedelta(hours=1)
    queues = HOST["extensions"]["queues"]
    # The worker quarantines a job itself on the attempt the host would poison it on; they must agree.
    from recording_pipeline.settings import Settings

    assert queues["maxDequeueCount"] == Settings.__dataclass_fields__["max_dequeue_count"].default
    # Few multi-GB transfers per instance at once: memory per transfer is (concurrency + 2) blocks.
    assert queues["batchSize"] + queues["newBatchThreshold"] <= 8


async def test_enqueued_messages_decode_the_way_host_json_says(stack: Stack) -> None:
    """Read a message the webhook path wrote, raw, and decode it as the Functions host would."""
    encoding = HOST["extensions"]["queues"].get("messageEncoding", "base64")
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
