"""The archive account on a bad day: Azure Storage's faults by operation, through a fault proxy before Azurite.

Every test runs several chunks at once through function_app.py under the local host, faults the requests of
one of them (or any), and checks every guarantee: each chunk archived byte-identical once, one custody record,
one DELETE after the media and the custody record, nothing poisoned, and no other chunk in the worker touched
(each downloaded once, no worker restart, no timeout).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from devtools.devstack import DEV_ACCOUNT, DEV_KEY, Azurite
from devtools.simulator import SimRecording
from recording_pipeline.core.naming import QUARANTINE_PREFIX, recording_key
from recording_pipeline.core.state import chunk_key
from tests.support.stack import Stack, post_events, wait_until
from tests.support.storage_proxy import StorageFault, StorageFaultProxy

MIB = 1024 * 1024
CALL = "cdcdcdcd-0000-0000-0000-000000000000"
# With 1 MiB blocks and the default concurrency of 4: a chunk of at most 1 MiB is created by one Put Blob from
# memory, one of up to 5 MiB is streamed from the download into one Put Blob, a larger one is staged in blocks.
SIZES = {"whole": MIB - 1000, "streamed": 4 * MIB + 17, "staged": 7 * MIB + 3}


def proxied(azurite: Azurite, blob: StorageFaultProxy | None = None, queue: StorageFaultProxy | None = None) -> str:
    """Azurite's connection string with its blob and/or queue endpoint behind a fault proxy."""
    blob_url = blob.url if blob else f"http://{azurite.host}:{azurite.blob_port}"
    queue_url = queue.url if queue else f"http://{azurite.host}:{azurite.queue_port}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint={blob_url}/{DEV_ACCOUNT};QueueEndpoint={queue_url}/{DEV_ACCOUNT};"
    )


@pytest.fixture
async def blob_proxy(azurite: Azurite) -> AsyncIterator[StorageFaultProxy]:
    proxy = await StorageFaultProxy(f"http://{azurite.host}:{azurite.blob_port}").start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def queue_proxy(azurite: Azurite) -> AsyncIterator[StorageFaultProxy]:
    proxy = await StorageFaultProxy(f"http://{azurite.host}:{azurite.queue_port}").start()
    yield proxy
    await proxy.stop()


async def _archived(stack: Stack, rec: str, chunks: list[SimRecording]) -> dict[str, Any] | None:
    manifest = await stack.manifest(CALL, recording_key(rec, None))
    if manifest is None:
        return None
    entries = manifest["chunks"]
    done = all(entries.get(chunk_key(c.chunk_index), {}).get("sourceDeletedAt") for c in chunks)
    return manifest if done else None


async def _sha256(container: ContainerClient, name: str) -> str:
    hasher = hashlib.sha256()
    async for piece in (await container.get_blob_client(name).download_blob()).chunks():
        hasher.update(piece)
    return hasher.hexdigest()


async def assert_every_guarantee(
    stack: Stack, blob_service: BlobServiceClient, proxy: StorageFaultProxy, chunks: list[SimRecording]
) -> None:
    """Archived byte-identical once, one custody record, one DELETE after both blobs, nothing poisoned."""
    container = blob_service.get_container_client(stack.container)
    names = [n async for n in container.list_blob_names()]
    sim = stack.simulator
    for chunk in chunks:
        mine = [n for n in names if chunk.document_id in n and not n.startswith("_")]
        media = [n for n in mine if not n.endswith(".json")]
        custody = [n for n in mine if n.endswith(".custody.json")]
        assert len(media) == 1 and len(custody) == 1, mine
        assert await _sha256(container, media[0]) == chunk.sha256
        deletes = [r for r in sim.requests if r.method == "DELETE" and r.document_id == chunk.document_id]
        assert [r.status for r in deletes] == [200], f"{chunk.document_id}: one DELETE, answered 200"
        written = [r.at for r in proxy.requests if r.path.endswith((media[0], custody[0])) and r.status == 201]
        assert len(written) >= 2 and sim.deleted_at[chunk.document_id] > max(written), "DELETE after both blobs"
    assert await stack.peek(poison=True) == []
    state = blob_service.get_container_client(stack.state_container)
    assert [n async for n in state.list_blob_names(name_starts_with=QUARANTINE_PREFIX)] == []


async def _run(
    stack: Stack,
    blob_service: BlobServiceClient,
    proxy: StorageFaultProxy,
    faulted: str,
    **overrides: str,
) -> list[SimRecording]:
    """Three chunks of each kind at once, paced so they are all in flight together; ``faulted`` names the kind
    whose requests the proxy's faults are aimed at: each fault's ``blob`` is the end of the blob's name after
    the document id (".mp4": the media, ".custody.json": its custody record)."""
    sim = stack.simulator
    chunks = {
        kind: [sim.add(f"doc-{kind}-{i}", size + i, call_id=CALL, chunk_index=0, rate=2 * MIB) for i in range(3)]
        for kind, size in SIZES.items()
    }
    target = chunks[faulted][1].document_id
    for fault in proxy.faults:
        fault.blob = f"{target}{fault.blob}"
    local = await stack.local_host(
        in_process=False,
        TRANSFER_BLOCK_SIZE_MIB="1",
        ARCHIVE_STORAGE_CONNECTION_STRING=proxied(stack.azurite, blob=proxy),
        **overrides,
    )
    everything = [c for group in chunks.values() for c in group]
    try:
        key = stack.env["WEBHOOK_KEY"]
        for chunk in everything:
            event = sim.event(CALL, f"rec-{chunk.document_id}", [chunk])
            assert (await post_events(local.url, [event], key))[0] == 200
        for chunk in everything:
            await wait_until(lambda chunk=chunk: _archived(stack, f"rec-{chunk.document_id}", [chunk]), timeout=120)
        assert proxy.faulted(), "no fault was injected"
        await assert_every_guarantee(stack, blob_service, proxy, everything)
        stats = local.host.stats
        assert stats.timeouts == 0 and stats.worker_starts == 1, "no invocation timed out, the worker never restarted"
        for chunk in everything:
            if chunk.document_id != target:
                assert sim.count("GET", "media", chunk.document_id) == 1, f"{chunk.document_id} was downloaded again"
    finally:
        await local.stop()
    return everything


async def test_a_reset_while_a_streamed_put_blob_is_sent_costs_only_its_own_chunk(
    stack: Stack, blob_service: BlobServiceClient, blob_proxy: StorageFaultProxy
) -> None:
    """The connection resets while the body of a streamed Put Blob is being sent. That chunk sends its file
    again; the other eight in the same worker are untouched. (A CancelledError out of the invocation would leave
    it unanswered until functionTimeout, and the host's restart would end every other invocation.)"""
    blob_proxy.faults.append(StorageFault("put-blob", "reset", blob=".mp4", body_bytes=2 * MIB))
    await _run(stack, blob_service, blob_proxy, "streamed", AzureFunctionsJobHost__functionTimeout="00:00:30")
