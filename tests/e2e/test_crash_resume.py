"""A worker process SIGKILLed in the middle of a 1 GiB chunk, then restarted."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from recording_pipeline.app.transfer import resume_count
from recording_pipeline.core.custody import CustodyRecord, Verification
from recording_pipeline.core.naming import chunk_stem, custody_name, media_name, recording_key
from recording_pipeline.core.ports import StagedBlock
from tests.support.stack import Stack, post_events, wait_until

MIB = 1024 * 1024
CALL = "dddddddd-0000-0000-0000-000000000000"
REC = "recCrash"


@pytest.mark.slow
async def test_sigkill_mid_transfer_resumes_at_the_first_unstaged_block(
    stack: Stack, blob_service: BlobServiceClient, serve_factory: Any
) -> None:
    sim = stack.simulator
    block_mib, concurrency = 8, 4
    chunk = sim.add("0-eus-crash-0000", 1024 * MIB, "mp4", chunk_index=0, call_id=CALL)
    env = {
        **stack.env,
        "TRANSFER_BLOCK_SIZE_MIB": str(block_mib),
        "TRANSFER_CONCURRENCY": str(concurrency),
        # The killed instance's message comes back (after 5 s, not the host's 10 min) while its blob lease may
        # still be held.
        "LOCAL_HOST_LEASE_SECONDS": "5",
        "AzureFunctionsJobHost__extensions__queues__batchSize": "1",
        "AzureFunctionsJobHost__extensions__queues__newBatchThreshold": "0",
    }
    first = serve_factory(env)
    status, _ = await post_events(first.url, [sim.event(CALL, REC, [chunk])], env["WEBHOOK_KEY"])
    assert status == 200

    async def well_under_way() -> bool:
        return sim.bytes_served.get(chunk.document_id, 0) >= 400 * MIB

    await wait_until(well_under_way, timeout=120, interval=0.05)
    first.kill()
    served_before_kill = sim.bytes_served[chunk.document_id]
    assert served_before_kill < chunk.size, "the transfer finished before the kill; nothing was tested"

    await asyncio.sleep(2)  # let storage finish requests the dead process had already sent in full
    blob = media_name(chunk_stem(CALL, recording_key(REC, None), 0, chunk.document_id), "mp4")
    client = blob_service.get_container_client(stack.container).get_blob_client(blob)
    _, uncommitted = await client.get_block_list("uncommitted")
    staged = [StagedBlock(str(b.id), int(b.size)) for b in uncommitted]
    block = block_mib * MIB
    staged_prefix = resume_count(staged, block) * block
    assert staged_prefix >= 300 * MIB

    requests_before = len(sim.requests)
    second = serve_factory(env)

    async def deleted() -> bool:
        return chunk.document_id in sim.deleted

    await wait_until(deleted, timeout=240)
    second.stop()

    resumed = [r for r in sim.requests[requests_before:] if r.kind == "media" and r.status in (200, 206)]
    assert len(resumed) == 1
    assert resumed[0].range == f"bytes={staged_prefix}-", "did not resume at the first block that was not staged"
    downloaded_twice = sim.bytes_served[chunk.document_id] - chunk.size
    # Exactly what had been received but not yet staged when the process died: the blocks still uploading,
    # the one being filled, and what sat in socket buffers.
    assert downloaded_twice == served_before_kill - staged_prefix
    # At most the blocks the engine held (uploading, plus the one being filled) and what the kernel buffered
    # between the two sockets; on loopback the receive buffer alone may grow to tcp_rmem's maximum.
    held_by_engine = (concurrency + 1) * block
    assert downloaded_twice <= held_by_engine + _socket_buffer_maxima() + MIB
    print(
        f"\nSIGKILL at {served_before_kill / MIB:.0f} MiB served; resumed at {staged_prefix / MIB:.0f} MiB; "
        f"downloaded twice: {downloaded_twice / MIB:.1f} MiB ({downloaded_twice / block:.2f} blocks)"
    )

    hasher, size = hashlib.sha256(), 0
    async for piece in (await client.download_blob()).chunks():
        hasher.update(piece)
        size += len(piece)
    assert (hasher.hexdigest(), size) == (chunk.sha256, chunk.size)
    # The copy was resumed, so its hash was not known at commit: the archive was read back, and the proof says so.
    custody_blob = blob_service.get_container_client(stack.container).get_blob_client(custody_name(blob[:-4]))
    custody = CustodyRecord.model_validate_json(await (await custody_blob.download_blob()).readall())
    assert (custody.sha256, custody.size, custody.verification) == (chunk.sha256, chunk.size, Verification.READ_BACK)
    assert custody.resumed_from_byte == staged_prefix
    assert sum(1 for r in sim.requests if r.method == "DELETE" and r.status == 200) == 1


def _socket_buffer_maxima() -> int:
    """The most the kernel may hold in flight on one TCP connection: the receiver's and the sender's buffers."""

    def largest(path: str, default: int) -> int:
        try:
            with open(path) as file:
                return int(file.read().split()[-1])
        except (OSError, ValueError):
            return default

    return largest("/proc/sys/net/ipv4/tcp_rmem", 6 * MIB) + largest("/proc/sys/net/ipv4/tcp_wmem", 4 * MIB)
