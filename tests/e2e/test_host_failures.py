"""What the Functions host does to the app, through function_app.py under the local host.

Settings that cannot be used, processes killed again and again, attempts that
would run into functionTimeout, a connection reset long after the retry
budget's first try, buffers after failed transfers: each ends with every chunk
archived once and nothing poisoned while the deadline is far.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.queue.aio import QueueClient

from devtools.simulator import Fault, SimRecording
from recording_pipeline.app.transfer import process_budget
from recording_pipeline.core.events import parse_recording_event, read_envelope
from recording_pipeline.core.jobs import RecordingChunk, plan_jobs
from recording_pipeline.core.naming import QUARANTINE_PREFIX, recording_key
from recording_pipeline.core.state import chunk_key
from tests.support.stack import Stack, post_events, wait_until

MIB = 1024 * 1024
CALL = "abababab-0000-0000-0000-000000000000"
UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://vault.vault.azure.net/secrets/acs-connection-string/)"


async def _queue_messages(stack: Stack, name: str) -> list[Any]:
    client = QueueClient.from_connection_string(stack.azurite.connection_string, name)
    async with client:
        try:
            return list(await client.peek_messages(max_messages=32))
        except ResourceNotFoundError:
            return []


async def _archived(stack: Stack, rec: str, chunks: list[SimRecording]) -> dict[str, Any] | None:
    manifest = await stack.manifest(CALL, recording_key(rec, None))
    if manifest is None:
        return None
    entries = manifest["chunks"]
    done = all(entries.get(chunk_key(c.chunk_index), {}).get("sourceDeletedAt") for c in chunks)
    return manifest if done else None


async def _assert_archived_once(container: ContainerClient, stack: Stack, chunks: list[SimRecording]) -> None:
    names = [n async for n in container.list_blob_names()]
    for chunk in chunks:
        media = [n for n in names if chunk.document_id in n and not n.endswith(".json") and not n.startswith("_")]
        assert len(media) == 1, media
        hasher = hashlib.sha256()
        async for piece in (await container.get_blob_client(media[0]).download_blob()).chunks():
            hasher.update(piece)
        assert hasher.hexdigest() == chunk.sha256
        deletes = [r for r in stack.simulator.requests if r.method == "DELETE" and r.document_id == chunk.document_id]
        assert [r.status for r in deletes] == [200], "one DELETE per chunk, after the copy"
    assert await _queue_messages(stack, f"{stack.queue}-poison") == []
    state = container.__class__.from_connection_string(stack.azurite.connection_string, stack.state_container)
    async with state:
        assert not [n async for n in state.list_blob_names(name_starts_with=QUARANTINE_PREFIX)]


def _jobs(stack: Stack, event: dict[str, Any]) -> list[RecordingChunk]:
    settings = stack.settings()

    policy = settings.url_policy
    return plan_jobs(
        parse_recording_event(read_envelope(event, "eventgrid")), settings.acs.credentials.endpoint, 24, policy
    )


async def test_settings_unresolved_at_the_first_starts_then_fixed_archive_all_and_poison_nothing(
    stack: Stack, blob_service: BlobServiceClient
) -> None:
    """A Key Vault reference the platform has not resolved yet reaches the app as its literal text. Until it is
    fixed no trigger takes a message (their dequeue counts stay 0) and the webhook answers 503 (Event Grid
    retries); after a restart with the secret resolved, everything is archived and nothing was poisoned."""
    sim = stack.simulator
    queued = sim.add("doc-waiting", MIB, call_id=CALL, chunk_index=0)
    later = sim.add("doc-retried", 2 * MIB, call_id=CALL, chunk_index=0)
    runtime = await stack.runtime()  # a job already on the queue when the broken deployment starts
    try:
        await runtime.queue.enqueue(_jobs(stack, sim.event(CALL, "recWaiting", [queued])))
    finally:
        await runtime.close()
    event = sim.event(CALL, "recRetried", [later])
    for _start in range(3):
        broken = await stack.local_host(ACS_CONNECTION_STRING=UNRESOLVED)
        try:
            assert {f.name for f in broken.host.functions()} == {"recording_events"}
            status, body = await post_events(broken.url, [event], stack.env["WEBHOOK_KEY"])
            assert status == 503 and "ACS_CONNECTION_STRING is an unresolved Key Vault reference" in body["error"]
            await asyncio.sleep(1.0)  # several polling intervals: a listener, had there been one, would have read
        finally:
            await broken.stop()
        [waiting] = await _queue_messages(stack, stack.queue)
        assert waiting.dequeue_count == 0
    fixed = await stack.local_host()
    try:
        status, _ = await post_events(fixed.url, [event], stack.env["WEBHOOK_KEY"])  # Event Grid's next retry
        assert status == 200
        container = blob_service.get_container_client(stack.container)
        await wait_until(lambda: _archived(stack, "recWaiting", [queued]), timeout=60)
        await wait_until(lambda: _archived(stack, "recRetried", [later]), timeout=60)
        await _assert_archived_once(container, stack, [queued, later])
    finally:
        await fixed.stop()


@pytest.mark.slow
async def test_killed_mid_transfer_more_times_than_max_dequeue_count_is_archived_once(
    stack: Stack, blob_service: BlobServiceClient, serve_factory: Any
) -> None:
    """Each kill (the whole instance, host and worker) returns the message with a higher dequeue count; once it
    reaches maxDequeueCount the app itself puts the job back as a fresh message, so the host never poisons it,
    and every attempt resumes from the blocks staged before."""
    sim = stack.simulator
    [chunk] = [sim.add("doc-killed", 24 * MIB, call_id=CALL, chunk_index=0, rate=4 * MIB)]
    env = {
        **stack.env,
        "TRANSFER_BLOCK_SIZE_MIB": "1",
        "LOCAL_HOST_LEASE_SECONDS": "2",  # a dead instance's message returns after 2 s (the host: 10 min)
        "AzureFunctionsJobHost__extensions__queues__batchSize": "1",
        "AzureFunctionsJobHost__extensions__queues__newBatchThreshold": "0",
    }
    kills = 6  # one more than host.json's maxDequeueCount
    serve = serve_factory(env)
    status, _ = await post_events(serve.url, [sim.event(CALL, "recKilled", [chunk])], env["WEBHOOK_KEY"])
    assert status == 200
    for _kill in range(kills):
        before = sim.bytes_served.get(chunk.document_id, 0)

        async def moving(before: int = before) -> bool:
            return sim.bytes_served.get(chunk.document_id, 0) >= before + 2 * MIB

        await wait_until(moving, timeout=90, interval=0.05)
        serve.kill()
        assert sim.bytes_served[chunk.document_id] < 2 * chunk.size, "re-downloading, not resuming"
        serve = serve_factory(env)
    container = blob_service.get_container_client(stack.container)
    manifest = await wait_until(lambda: _archived(stack, "recKilled", [chunk]), timeout=180)
    await _assert_archived_once(container, stack, [chunk])
    assert manifest["chunks"]["00000"]["requeues"] >= 1  # the app took the job back from the host's count
    media_gets = [r for r in sim.requests if r.kind == "media" and r.status in (200, 206)]
    assert len(media_gets) >= kills + 1 and all(r.range for r in media_gets[1:]), "every attempt resumed"


async def test_an_attempt_ends_itself_before_function_timeout_and_the_chunk_beside_it_is_untouched(
    stack: Stack, blob_service: BlobServiceClient
) -> None:
    """A timeout would fail the attempt and restart the worker process, killing every other invocation in it.
    An attempt that stops itself first fails alone, and the next one resumes from its staged blocks."""
    sim = stack.simulator
    long = sim.add("doc-long", 20 * MIB, call_id=CALL, chunk_index=0, rate=MIB)
    beside = sim.add("doc-beside", 4 * MIB, call_id=CALL, chunk_index=0, rate=MIB)
    local = await stack.local_host(
        in_process=False, AzureFunctionsJobHost__functionTimeout="00:00:08", TRANSFER_BLOCK_SIZE_MIB="1"
    )
    try:
        key = stack.env["WEBHOOK_KEY"]
        assert (await post_events(local.url, [sim.event(CALL, "recLong", [long])], key))[0] == 200

        async def under_way() -> bool:
            return sim.bytes_served.get(long.document_id, 0) >= 5 * MIB

        await wait_until(under_way, timeout=30, interval=0.05)
        # In flight from about second 5 to 9: across the moment (8 s) the host would time the first one out.
        assert (await post_events(local.url, [sim.event(CALL, "recBeside", [beside])], key))[0] == 200
        container = blob_service.get_container_client(stack.container)
        await wait_until(lambda: _archived(stack, "recBeside", [beside]), timeout=60)
        await wait_until(lambda: _archived(stack, "recLong", [long]), timeout=180)
        await _assert_archived_once(container, stack, [long, beside])
        assert local.host.stats.timeouts == 0 and local.host.stats.worker_starts == 1
        assert sim.count("GET", "media", beside.document_id) == 1, "the chunk beside it was never interrupted"
        ranges = [r.range for r in sim.requests if r.document_id == long.document_id and r.kind == "media"]
        assert len(ranges) >= 3 and ranges[0] is None and all(ranges[1:]), "each attempt resumed"
    finally:
        await local.stop()


async def test_a_reset_after_the_retry_budget_s_first_try_resumes_in_place(
    stack: Stack, blob_service: BlobServiceClient
) -> None:
    """Minute 11 of a slow transfer whose retry budget is 10 minutes, scaled down: a 2 s budget and a reset
    after 3 s of download. Bytes arrived, so it is a new streak: the same attempt resumes with a Range."""
    sim = stack.simulator
    [chunk] = [sim.add("doc-slow", 8 * MIB, call_id=CALL, chunk_index=0, rate=2 * MIB)]
    sim.faults.append(Fault(kind="media", action="reset", body_bytes=6 * MIB))
    local = await stack.local_host(ACS_RETRY_BUDGET_SECONDS="2", TRANSFER_BLOCK_SIZE_MIB="1")
    try:
        assert (await post_events(local.url, [sim.event(CALL, "recSlow", [chunk])], stack.env["WEBHOOK_KEY"]))[0] == 200
        container = blob_service.get_container_client(stack.container)
        await wait_until(lambda: _archived(stack, "recSlow", [chunk]), timeout=60)
        await _assert_archived_once(container, stack, [chunk])
        ranges = [r.range for r in sim.requests if r.kind == "media" and r.status in (200, 206)]
        assert len(ranges) == 2 and ranges[0] is None
        assert int(str(ranges[1]).split("=")[1].rstrip("-")) >= 4 * MIB
        assert local.host.stats.invocations["archive_recording_chunk"] == 1, "resumed within the same attempt"
    finally:
        await local.stop()


async def test_repeated_transfer_failures_leave_no_buffer_budget_held(
    stack: Stack, blob_service: BlobServiceClient
) -> None:
    sim = stack.simulator
    chunks = [sim.add(f"doc-budget-{i}", 5 * MIB + i, call_id=CALL, chunk_index=i) for i in range(4)]
    sim.faults += [Fault(kind="media", action="reset", body_bytes=(i + 1) * MIB + 7) for i in range(6)]
    sim.faults.append(Fault(kind="media", action="truncate", body_bytes=2 * MIB, times=4))
    local = await stack.local_host(TRANSFER_BLOCK_SIZE_MIB="1", ACS_RETRY_ATTEMPTS="2")
    try:
        event = sim.event(CALL, "recBudget", chunks)
        assert (await post_events(local.url, [event], stack.env["WEBHOOK_KEY"]))[0] == 200
        await wait_until(lambda: _archived(stack, "recBudget", chunks), timeout=120)
        broken = sum(1 for f in sim.faults if f.times == 0)
        assert broken >= 6, f"only {broken} downloads broke off"
        assert process_budget().held == 0
    finally:
        await local.stop()


@pytest.mark.parametrize("pipeline_retention", ["0.5"])
async def test_a_quarantined_job_is_kept_in_the_archive_and_its_poison_message_never_expires(
    stack: Stack, blob_service: BlobServiceClient, pipeline_retention: str
) -> None:
    """Both copies of the record that matters outlive the queue's default 7 days; replay finds the job in the
    archive even when the poison message is gone."""
    from recording_pipeline.cli.replay import replay_poison

    sim = stack.simulator
    [chunk] = [sim.add("doc-quarantined", MIB, call_id=CALL, chunk_index=0)]
    sim.faults.append(Fault(kind="metadata", status=500, times=10_000))
    local = await stack.local_host(RECORDING_RETENTION_HOURS=pipeline_retention)
    runtime = await stack.runtime()
    try:
        event = sim.event(CALL, "recQuarantined", [chunk])
        assert (await post_events(local.url, [event], stack.env["WEBHOOK_KEY"]))[0] == 200
        poison = f"{stack.queue}-poison"
        [message] = await wait_until(lambda: _queue_messages(stack, poison), timeout=60)
        assert message.expires_on.year >= 9999, "a poison message that never expires"
        state = blob_service.get_container_client(stack.state_container)
        records = [n async for n in state.list_blob_names(name_starts_with=QUARANTINE_PREFIX)]
        assert records == [f"{QUARANTINE_PREFIX}{CALL}/r-recQuarantined/00000-{chunk.document_id}.json"]
        record = json.loads(await (await state.get_blob_client(records[0]).download_blob()).readall())
        assert record["job"]["document_id"] == chunk.document_id and "AcsTransientError" in record["error"]
        async with stack.raw_queue(poison=True) as poison_queue:  # the queue copy lost: the archive's is enough
            await poison_queue.clear_messages()
        sim.faults.clear()
        assert await replay_poison(runtime.queue, runtime.state) == (1, 0)
        await wait_until(lambda: _archived(stack, "recQuarantined", [chunk]), timeout=60)
        assert [n async for n in state.list_blob_names(name_starts_with=QUARANTINE_PREFIX)] == []
    finally:
        await runtime.close()
        await local.stop()


@pytest.mark.slow
async def test_a_site_update_mid_transfer_archives_every_chunk_once_and_poisons_nothing(
    stack: Stack, blob_service: BlobServiceClient
) -> None:
    """Flex's "Recreate" site update: a deploy or an app-setting change ends every running execution, and the
    instance starts again with the new settings. Four chunks are cut off mid-transfer at once; their messages are
    not completed, come back when their invisibility lapses, and each copy resumes from its staged blocks."""
    sim = stack.simulator
    chunks = [sim.add(f"doc-update-{i}", 12 * MIB, call_id=CALL, chunk_index=0, rate=2 * MIB) for i in range(4)]
    local = await stack.start_host({"TRANSFER_BLOCK_SIZE_MIB": "1"}, in_process=False, lease_seconds=2)
    try:
        key = stack.env["WEBHOOK_KEY"]
        for i, chunk in enumerate(chunks):
            assert (await post_events(local.url, [sim.event(CALL, f"recUpdate{i}", [chunk])], key))[0] == 200

        async def all_under_way() -> bool:
            return all(sim.bytes_served.get(c.document_id, 0) >= 3 * MIB for c in chunks)

        await wait_until(all_under_way, timeout=60, interval=0.05)
        served_before = {c.document_id: sim.bytes_served[c.document_id] for c in chunks}
        await local.host.update_site(TRANSFER_CONCURRENCY="2")  # an app setting changed in the portal
        assert local.host.worker is not None and local.host.worker.env["TRANSFER_CONCURRENCY"] == "2"
        container = blob_service.get_container_client(stack.container)
        for i, chunk in enumerate(chunks):
            await wait_until(lambda i=i, chunk=chunk: _archived(stack, f"recUpdate{i}", [chunk]), timeout=120)
        await _assert_archived_once(container, stack, chunks)
        assert local.host.stats.recreated == 1 and local.host.stats.worker_starts == 2
        assert local.host.stats.poisoned_by_host == 0
        assert await _queue_messages(stack, f"{stack.queue}-poison") == []
        for chunk in chunks:
            assert chunk.document_id in sim.deleted
            ranges = [r.range for r in sim.requests if r.document_id == chunk.document_id and r.kind == "media"]
            assert ranges[0] is None and len(ranges) >= 2 and all(ranges[1:]), f"{chunk.document_id} resumed"
            # What was downloaded twice is only what had arrived but was not yet staged when the worker ended.
            assert sim.bytes_served[chunk.document_id] < chunk.size + served_before[chunk.document_id]
    finally:
        await local.stop()
