"""The archive account on a bad day: Azure Storage's faults by operation, through a fault proxy before Azurite.

Every test runs several chunks at once through function_app.py under the local host, faults the requests of
one of them (or any), and checks every guarantee: each chunk archived byte-identical once, one custody record,
one DELETE after the media and the custody record, nothing poisoned, and no other chunk in the worker touched
(each downloaded once, no worker restart, no timeout).
"""

from __future__ import annotations

import hashlib
import time
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
    stack: Stack,
    blob_service: BlobServiceClient,
    proxy: StorageFaultProxy | None,
    chunks: list[SimRecording],
    duplicates: bool = False,
) -> None:
    """Archived byte-identical once, one custody record, one DELETE after both blobs (``proxy``: the archive's, to
    see when they were written), nothing poisoned. ``duplicates``: a job delivered twice may DELETE again; ACS
    answers 404, which counts as done."""
    container = blob_service.get_container_client(stack.container)
    names = [n async for n in container.list_blob_names()]
    sim = stack.simulator
    for chunk in chunks:
        mine = [n for n in names if chunk.document_id in n and not n.startswith("_")]
        media = [n for n in mine if not n.endswith(".json")]
        custody = [n for n in mine if n.endswith(".custody.json")]
        assert len(media) == 1 and len(custody) == 1, mine
        assert await _sha256(container, media[0]) == chunk.sha256
        deletes = [r.status for r in sim.requests if r.method == "DELETE" and r.document_id == chunk.document_id]
        if duplicates:
            assert deletes[0] == 200 and set(deletes[1:]) <= {404}, f"{chunk.document_id}: {deletes}"
        else:
            assert deletes == [200], f"{chunk.document_id}: one DELETE, answered 200, not {deletes}"
        if proxy is not None:
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
    in_process: bool = True,
    **overrides: str,
) -> list[SimRecording]:
    """Two chunks of each kind at once, paced so they are all in flight together; ``faulted`` names the kind
    whose requests the proxy's faults are aimed at: each fault's ``blob`` is the end of the blob's name after
    the document id (".mp4": the media, ".custody.json": its custody record)."""
    sim = stack.simulator
    chunks = {
        kind: [sim.add(f"doc-{kind}-{i}", size + i, call_id=CALL, chunk_index=0, rate=4 * MIB) for i in range(2)]
        for kind, size in SIZES.items()
    }
    target = chunks[faulted][1].document_id
    for fault in proxy.faults:
        fault.blob = f"{target}{fault.blob}"
    local = await stack.local_host(
        in_process=in_process,
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
    again; the other five in the same worker process are untouched. (A CancelledError out of the invocation would
    leave it unanswered until functionTimeout, and the host's restart would end every other invocation.)"""
    blob_proxy.faults.append(StorageFault("put-blob", "reset", blob=".mp4", body_bytes=2 * MIB))
    await _run(
        stack, blob_service, blob_proxy, "streamed", in_process=False, AzureFunctionsJobHost__functionTimeout="00:00:30"
    )


# What the archive account answers on a bad day, by operation: (the operation, the fault, the kind of chunk whose
# blob it hits, the end of that blob's name, how many times). Put Block and Put Block List are sent again by the
# SDK itself (their bodies can be replayed); a streamed Put Blob cannot be, so the transfer sends the file again;
# a create-only write whose answer was lost meets 409 on its retry, and what it wrote is checked, not trusted.
FAULTS = [
    ("put-block", "busy", "staged", ".mp4", 2),
    ("put-block", "timed-out", "staged", ".mp4", 1),
    ("put-block", "reset", "staged", ".mp4", 1),
    ("put-block", "stall", "staged", ".mp4", 1),
    ("put-block-list", "busy", "staged", ".mp4", 1),
    ("put-block-list", "lost-answer", "staged", ".mp4", 1),
    ("put-blob", "busy", "streamed", ".mp4", 1),
    ("put-blob", "lost-answer", "streamed", ".mp4", 1),
    ("put-blob", "stall", "streamed", ".mp4", 1),
    ("put-blob", "lost-answer", "whole", ".mp4", 1),
    ("put-blob", "reset", "whole", ".mp4", 1),
    ("put-blob", "lost-answer", "staged", ".metadata.json", 1),
    ("put-blob", "lost-answer", "streamed", ".custody.json", 1),
    ("put-blob", "busy", "whole", "/manifest.json", 2),
]


@pytest.mark.parametrize(
    ("operation", "kind", "faulted", "blob", "times"), FAULTS, ids=[f"{o}-{k}-{c}{b}" for o, k, c, b, _t in FAULTS]
)
async def test_a_storage_fault_costs_at_most_its_own_chunk(
    stack: Stack,
    blob_service: BlobServiceClient,
    blob_proxy: StorageFaultProxy,
    operation: str,
    kind: str,
    faulted: str,
    blob: str,
    times: int,
) -> None:
    body = {"reset": 300 * 1024}.get(kind, 0)
    blob_proxy.faults.append(StorageFault(operation, kind, blob=blob, times=times, body_bytes=body))
    await _run(stack, blob_service, blob_proxy, faulted)
    hit = blob_proxy.faulted()
    assert len(hit) == times and all(r.operation == operation for r in hit)
    if kind in ("lost-answer", "stall"):
        assert all(r.path.endswith(blob) for r in hit)


# --- the webhook when the queue (or the archive) falters ---------------------------------------------------------


async def _webhook_stack(stack: Stack, queue_proxy: StorageFaultProxy, blob_proxy: StorageFaultProxy) -> Any:
    """The local host whose app writes its jobs through ``queue_proxy`` and its archive through ``blob_proxy``."""
    proxied_queue = proxied(stack.azurite, queue=queue_proxy)
    return await stack.local_host(
        AzureWebJobsStorage=proxied_queue,
        ARCHIVE_STORAGE_CONNECTION_STRING=proxied(stack.azurite, blob=blob_proxy),
    )


async def test_the_webhook_answers_503_while_the_queue_refuses_and_a_redelivery_archives_everything_once(
    stack: Stack, blob_service: BlobServiceClient, queue_proxy: StorageFaultProxy, blob_proxy: StorageFaultProxy
) -> None:
    """Put Message answers 503 ServerBusy beyond the client's retries: Event Grid gets 503 (it retries), in seconds,
    not after its own 30 s wait. Some of the delivery's jobs may already be on the queue: the redelivery enqueues
    them again, and the duplicates do no harm."""
    sim = stack.simulator
    chunks = [sim.add(f"doc-queue-{i}", MIB + i, call_id=CALL, chunk_index=i) for i in range(4)]
    event = sim.event(CALL, "rec-queue", chunks)
    queue_proxy.faults.append(StorageFault("put-message", "busy", times=3 * len(chunks)))  # every try of each
    local = await _webhook_stack(stack, queue_proxy, blob_proxy)
    try:
        key = stack.env["WEBHOOK_KEY"]
        started = time.monotonic()
        status, body = await post_events(local.url, [event], key)
        assert status == 503 and "unavailable" in body["error"]
        assert time.monotonic() - started < 20, "answered well within Event Grid's 30 s"
        assert (await post_events(local.url, [event], key))[0] == 200  # Event Grid's retry
        await wait_until(lambda: _archived(stack, "rec-queue", chunks), timeout=90)
        await assert_every_guarantee(stack, blob_service, blob_proxy, chunks, duplicates=True)
    finally:
        await local.stop()


@pytest.mark.parametrize("kind", ["lost-answer", "stall"])
async def test_a_put_message_that_landed_unanswered_is_sent_again_and_the_duplicate_is_harmless(
    stack: Stack,
    blob_service: BlobServiceClient,
    queue_proxy: StorageFaultProxy,
    blob_proxy: StorageFaultProxy,
    kind: str,
) -> None:
    """The message lands but its answer is lost, or held past the queue client's 5 s read timeout: the client
    sends it again, so the job is on the queue twice. Both are taken; the chunk is archived once."""
    sim = stack.simulator
    [chunk] = [sim.add(f"doc-twice-{kind}", 2 * MIB, call_id=CALL, chunk_index=0)]
    queue_proxy.faults.append(StorageFault("put-message", kind, stall_seconds=8))
    local = await _webhook_stack(stack, queue_proxy, blob_proxy)
    try:
        started = time.monotonic()
        status, _ = await post_events(
            local.url, [sim.event(CALL, f"rec-twice-{kind}", [chunk])], stack.env["WEBHOOK_KEY"]
        )
        assert status == 200 and time.monotonic() - started < 20
        assert queue_proxy.count("put-message", status=201) == 2, "sent twice, landed twice"
        await wait_until(lambda: _archived(stack, f"rec-twice-{kind}", [chunk]), timeout=90)
        await assert_every_guarantee(stack, blob_service, blob_proxy, [chunk], duplicates=True)
    finally:
        await local.stop()


async def test_a_stalled_archive_answer_never_holds_the_webhook_past_event_grid_s_wait(
    stack: Stack, queue_proxy: StorageFaultProxy, blob_proxy: StorageFaultProxy
) -> None:
    """A refused event is kept in the archive before the answer; the archive holds that write's answer back for a
    minute. The webhook gives its writes 25 s and answers 503 (Event Grid retries) before its 30 s wait ends."""
    blob_proxy.faults.append(StorageFault("put-blob", "stall", blob="_rejected/", stall_seconds=60))
    local = await _webhook_stack(stack, queue_proxy, blob_proxy)
    try:
        sim = stack.simulator
        event = sim.event(CALL, "rec-refused", [sim.add("doc-refused", MIB, call_id=CALL, chunk_index=0)])
        refused = {**event, "subject": "not a recording subject"}
        started = time.monotonic()
        status, _ = await post_events(local.url, [refused], stack.env["WEBHOOK_KEY"])
        elapsed = time.monotonic() - started
        assert status == 503 and 24 <= elapsed < 30, elapsed
    finally:
        await local.stop()
