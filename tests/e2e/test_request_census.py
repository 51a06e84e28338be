"""What one chunk costs in storage requests, counted where they arrive: Azurite's access log.

A guard, not a timing: the first delivery of a one-block chunk, through
function_app.py under the local host, must cost the requests below and no
more (docs/PERFORMANCE.md has the census before and after). A new request on
this path fails here and has to be justified in both places.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import Azurite
from devtools.request_census import HOST_QUEUE_OPS, app_requests, census, read_log
from devtools.simulator import SimRecording, content_segments
from recording_pipeline.app.transfer import single_put_limit
from tests.support.stack import Stack, post_events, wait_until

MIB = 1024 * 1024
MAX_REQUESTS_PER_CHUNK = 10

ONE_BLOCK_CHUNK = Counter(
    {
        ("queue", "put message"): 1,  # the webhook's job
        # The metadata document, the media (one Put Blob with its metadata and index tag), the custody record,
        # 2 participant index entries, the source-deleted record, the recording's day index entry: each created once.
        ("archive", "put blob"): 7,
        ("state", "put blob"): 1,  # the manifest, created
    }
)


async def test_the_first_delivery_of_a_one_block_chunk_costs_nine_storage_requests(
    stack: Stack, azurite: Azurite
) -> None:
    sim = stack.simulator
    chunk = sim.add("doc-census", MIB, call_id="census-call")  # 4 MiB blocks: one block; two participants
    counts, chunk_requests = await _census_of_one_chunk(stack, azurite, chunk, "census-call", "rec-census")
    assert chunk_requests == ONE_BLOCK_CHUNK, sorted(chunk_requests.items())
    assert sum(chunk_requests.values()) <= MAX_REQUESTS_PER_CHUNK
    # The host's receive and complete of the job's message (and its polls) are the host's, counted apart.
    assert counts[("queue", "delete message")] == 1
    assert all(op in HOST_QUEUE_OPS for (role, op) in counts - chunk_requests if not op.startswith("container"))
    assert await _content_md5(stack, azurite, "census-call", "r-rec-census") == _md5_of(chunk)


BLOCK = 4 * MIB  # the default TRANSFER_BLOCK_SIZE_MIB and TRANSFER_CONCURRENCY
SINGLE_PUT_LIMIT = single_put_limit(BLOCK, 4)  # 20 MiB


@pytest.mark.parametrize(
    ("size", "staged_blocks"),
    [
        (SINGLE_PUT_LIMIT, 0),  # over one block, within the limit: one streamed Put Blob
        (SINGLE_PUT_LIMIT + 1, SINGLE_PUT_LIMIT // BLOCK + 1),  # past it: staged blocks and one Put Block List
    ],
)
async def test_a_chunk_within_the_single_put_limit_is_one_put_blob_and_every_media_blob_has_its_content_md5(
    stack: Stack, azurite: Azurite, size: int, staged_blocks: int
) -> None:
    sim = stack.simulator
    call = f"census-{size}"
    chunk = sim.add(f"doc-census-{size}", size, call_id=call)
    _, chunk_requests = await _census_of_one_chunk(stack, azurite, chunk, call, "rec-census")
    expected = ONE_BLOCK_CHUNK.copy()
    if staged_blocks:
        expected[("archive", "put blob")] -= 1
        expected[("archive", "put block")] = staged_blocks
        expected[("archive", "put block list")] = 1
    assert chunk_requests == expected, sorted(chunk_requests.items())
    # The whole file's MD5, computed while it streamed (staged) or by the service and compared with ours (one
    # Put Blob): what azcopy --check-md5 and Storage Explorer check a download against.
    assert await _content_md5(stack, azurite, call, "r-rec-census") == _md5_of(chunk)


def _md5_of(chunk: SimRecording) -> bytes:
    md5 = hashlib.md5(usedforsecurity=False)
    for segment in content_segments(chunk.seed, 0, chunk.size):
        md5.update(segment)
    return md5.digest()


async def _content_md5(stack: Stack, azurite: Azurite, call: str, recording_key: str) -> bytes | None:
    manifest = await stack.manifest(call, recording_key)
    assert manifest is not None
    media = manifest["chunks"]["00000"]["mediaBlob"]
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        props = await service.get_blob_client(stack.container, media).get_blob_properties()
    md5 = props.content_settings.content_md5
    return bytes(md5) if md5 else None


async def _census_of_one_chunk(
    stack: Stack, azurite: Azurite, chunk: SimRecording, call: str, recording: str
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """The storage requests of one chunk's first delivery through the local host: all, and the app's."""
    sim = stack.simulator
    host = await stack.local_host()
    try:
        await asyncio.sleep(0.5)  # the host's first polls and the app's one-time set-up are not the chunk's
        assert azurite.log_path is not None
        _, start = read_log(azurite.log_path)
        status, _ = await post_events(host.url, [sim.event(call, recording, [chunk])], stack.env["WEBHOOK_KEY"])
        assert status == 200

        async def done() -> bool:
            return chunk.document_id in sim.deleted and await stack.peek() == []

        await wait_until(done, timeout=60)  # the message is complete: so is the attempt, and its last write
        await asyncio.sleep(0.3)  # Azurite logs a request just after answering it
        requests, _ = read_log(azurite.log_path, start)
    finally:
        await host.stop()
    manifest = await stack.manifest(call, f"r-{recording}")
    assert manifest is not None and manifest["state"] == "complete"
    # The claim names the queue message (its id reached the app through the trigger), so a redelivery of it
    # knows the claim for its own.
    document = manifest["chunks"]["00000"]["metadataBlob"]
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        props = await service.get_blob_client(stack.container, document).get_blob_properties()
    assert props.metadata.get("claimed_by")
    roles = {stack.container: "archive", stack.state_container: "state", stack.queue: "queue"}
    counts = census(requests, roles.get)
    return counts, app_requests(counts)
