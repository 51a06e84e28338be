"""What one chunk costs in storage requests, counted where they arrive: Azurite's access log.

A guard, not a timing: the first delivery of a one-block chunk, through
function_app.py under the local host, must cost the requests below and no
more (docs/PERFORMANCE.md has the census before and after). A new request on
this path fails here and has to be justified in both places.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import Azurite
from devtools.request_census import HOST_QUEUE_OPS, app_requests, census, read_log
from tests.support.stack import Stack, post_events, wait_until

MIB = 1024 * 1024
MAX_REQUESTS_PER_CHUNK = 10

ONE_BLOCK_CHUNK = Counter(
    {
        ("queue", "put message"): 1,  # the webhook's job
        # The metadata document, the media (one Put Blob with its metadata and index tag), the custody record,
        # 2 participant index entries, the source-deleted record: each created once.
        ("archive", "put blob"): 6,
        ("state", "put blob"): 1,  # the manifest, created
    }
)


async def test_the_first_delivery_of_a_one_block_chunk_costs_eight_storage_requests(
    stack: Stack, azurite: Azurite
) -> None:
    sim = stack.simulator
    chunk = sim.add("doc-census", MIB, call_id="census-call")  # 4 MiB blocks: one block; two participants
    host = await stack.local_host()
    try:
        await asyncio.sleep(0.5)  # the host's first polls and the app's one-time set-up are not the chunk's
        assert azurite.log_path is not None
        _, start = read_log(azurite.log_path)
        status, _ = await post_events(
            host.url, [sim.event("census-call", "rec-census", [chunk])], stack.env["WEBHOOK_KEY"]
        )
        assert status == 200

        async def done() -> bool:
            return chunk.document_id in sim.deleted and await stack.peek() == []

        await wait_until(done, timeout=60)  # the message is complete: so is the attempt, and its last write
        await asyncio.sleep(0.3)  # Azurite logs a request just after answering it
        requests, _ = read_log(azurite.log_path, start)
    finally:
        await host.stop()
    manifest = await stack.manifest("census-call", "r-rec-census")
    assert manifest is not None and manifest["state"] == "complete"
    # The claim names the queue message (its id reached the app through the trigger), so a redelivery of it
    # knows the claim for its own.
    document = manifest["chunks"]["00000"]["metadataBlob"]
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        props = await service.get_blob_client(stack.container, document).get_blob_properties()
    assert props.metadata.get("claimed_by")
    roles = {stack.container: "archive", stack.state_container: "state", stack.queue: "queue"}
    counts = census(requests, roles.get)
    chunk_requests = app_requests(counts)
    assert chunk_requests == ONE_BLOCK_CHUNK, sorted(chunk_requests.items())
    assert sum(chunk_requests.values()) <= MAX_REQUESTS_PER_CHUNK
    # The host's receive and complete of the job's message (and its polls) are the host's, counted apart.
    assert counts[("queue", "delete message")] == 1
    assert all(op in HOST_QUEUE_OPS for (role, op) in counts - chunk_requests if not op.startswith("container"))
