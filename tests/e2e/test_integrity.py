"""A media blob that another attempt left without a proof, on Azurite with the simulator: what the next attempt
accepts as proof, and what it refuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from devtools.simulator import SimRecording, content_segments
from recording_pipeline.app.worker import Outcome, handle_chunk_message
from recording_pipeline.core.custody import CustodyRecord, Verification
from recording_pipeline.core.errors import ArchiveIntegrityError
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.naming import custody_name, media_name, metadata_name
from recording_pipeline.core.verification import SINGLE_PUT, SOURCE_SIZE, SOURCE_SIZE_DECLARED
from recording_pipeline.runtime import Runtime
from tests.support.stack import Stack, deliver

CALL = "ffffffff-0000-0000-0000-000000000000"
MIB = 1024 * 1024


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), 256 * 1024):
        yield data[at : at + 256 * 1024]


async def _left_by_an_earlier_attempt(stack: Stack, runtime: Runtime, flip: bool) -> tuple[SimRecording, str, str]:
    """A chunk within the single-put limit whose earlier attempt claimed it and created its media blob by one
    streamed Put Blob, then died before the custody record (or refused the blob on the service's MD5)."""
    size = 2 * runtime.worker.block_size + 12_345
    chunk = stack.simulator.add(f"doc-left-{int(flip)}", size, call_id=CALL)
    status, _, _ = await deliver(runtime, [stack.simulator.event(CALL, f"recLeft{int(flip)}", [chunk])])
    assert status == 200
    [message] = await stack.receive()
    text = str(message.content)
    job = RecordingChunk.model_validate_json(text)
    data = bytearray(b"".join(content_segments(chunk.seed, 0, size)))
    if flip:
        data[size // 2] ^= 1  # stored unlike what ACS serves
    await runtime.archive.create(metadata_name(job.stem), chunk.metadata(), "application/json")
    metadata = {SOURCE_SIZE_DECLARED: "true", SOURCE_SIZE: str(size), SINGLE_PUT: "true"}
    blob = media_name(job.stem, "mp4")
    assert await runtime.archive.put_media_stream(blob, _body(bytes(data)), size, "video/mp4", metadata, {})
    return chunk, text, job.stem


async def test_a_streamed_put_blob_left_unproved_is_proved_against_what_acs_serves(
    stack: Stack, runtime: Runtime
) -> None:
    chunk, text, stem = await _left_by_an_earlier_attempt(stack, runtime, flip=False)
    assert await handle_chunk_message(text, 1, runtime.worker) is Outcome.ARCHIVED
    found = await runtime.archive.read_bytes(custody_name(stem))
    assert found is not None
    custody = CustodyRecord.model_validate(json.loads(found[0]))
    assert (custody.verification, custody.sha256, custody.size) == (
        Verification.READ_BACK_AND_SOURCE,
        chunk.sha256,
        chunk.size,
    )
    assert stack.simulator.count("GET", "media", chunk.document_id) == 1  # the comparison's download
    assert chunk.document_id in stack.simulator.deleted


async def test_a_streamed_put_blob_unlike_what_acs_serves_is_never_proved(stack: Stack, runtime: Runtime) -> None:
    chunk, text, stem = await _left_by_an_earlier_attempt(stack, runtime, flip=True)
    with pytest.raises(ArchiveIntegrityError, match="differs from the file ACS serves"):
        await handle_chunk_message(text, 1, runtime.worker)  # the first attempt of the message: retried later
    assert await runtime.archive.read_bytes(custody_name(stem)) is None
    assert chunk.document_id not in stack.simulator.deleted
    assert stack.simulator.count("DELETE") == 0
