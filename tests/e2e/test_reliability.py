"""Fault injection: what ACS, storage and the host do on a bad day, and proof
that every chunk still ends as exactly one verified, byte-identical copy, with
no DELETE before verification.

Everything goes through function_app.py under the local Functions host, with
host.json's rules (its retry delay shortened by the host's own app-setting
override, see conftest)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from devtools.simulator import Fault, SimRecording, content_segments
from devtools.write_once import Guard
from recording_pipeline.app.worker import Outcome, handle_chunk_message
from recording_pipeline.core.custody import CustodyRecord
from recording_pipeline.core.events import parse_recording_event, read_envelope
from recording_pipeline.core.jobs import encode_job, plan_jobs
from recording_pipeline.core.naming import recording_key
from recording_pipeline.core.state import chunk_key
from recording_pipeline.runtime import Runtime
from tests.support.stack import LocalHost, Stack, post_events, wait_until

MIB = 1024 * 1024
CALL = "cccccccc-0000-0000-0000-000000000000"
REC = "recFaults"


@dataclass
class Pipeline:
    """function_app.py under the local host in this process, on real Azurite and the simulator; ``runtime`` is
    the test's own set of the app's clients, for looking at the queues."""

    stack: Stack
    runtime: Runtime
    host: LocalHost
    container: ContainerClient
    violations: list[str]

    async def deliver(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        status, body = await post_events(self.host.url, events, self.stack.env["WEBHOOK_KEY"])
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    async def manifest(self, rec_id: str = REC, call: str = CALL) -> dict[str, Any] | None:
        return await self.stack.manifest(call, recording_key(rec_id, None))

    async def wait_archived(
        self, chunks: list[SimRecording], rec_id: str = REC, timeout: float = 120
    ) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            manifest = await self.manifest(rec_id)
            if manifest is None:
                return None
            entries = manifest["chunks"]
            ok = all(entries.get(chunk_key(c.chunk_index), {}).get("sourceDeletedAt") for c in chunks)
            return manifest if ok else None

        return await wait_until(done, timeout=timeout)  # type: ignore[no-any-return]

    async def assert_identical(self, manifest: dict[str, Any], chunks: list[SimRecording]) -> None:
        for chunk in chunks:
            entry = manifest["chunks"][chunk_key(chunk.chunk_index)]
            hasher, size = hashlib.sha256(), 0
            downloader = await self.container.get_blob_client(entry["mediaBlob"]).download_blob()
            async for piece in downloader.chunks():
                hasher.update(piece)
                size += len(piece)
            assert (hasher.hexdigest(), size) == (chunk.sha256, chunk.size), chunk.document_id
            assert entry["sha256"] == chunk.sha256
        names = [n async for n in self.container.list_blob_names(name_starts_with=f"{CALL}/")]
        media = [n for n in names if n.endswith((".mp4", ".wav", ".mp3", ".bin"))]
        assert len(media) == len(set(media)) == len({c.document_id for c in chunks}), "duplicate media blobs"
        assert not self.violations, self.violations


@pytest.fixture
async def pipeline(
    stack: Stack, blob_service: BlobServiceClient, request: pytest.FixtureRequest
) -> AsyncIterator[Pipeline]:
    overrides = getattr(request, "param", {})
    runtime = await stack.runtime(**overrides)
    container = blob_service.get_container_client(stack.container)
    violations: list[str] = []

    async def deletes_only_verified(recording: SimRecording) -> None:
        names = [n async for n in container.list_blob_names(name_starts_with=f"{CALL}/")]
        media = [n for n in names if recording.document_id in n and not n.endswith(".json")]
        if not media:
            violations.append(f"DELETE of {recording.document_id} before any archive")
            return
        proof = [n for n in names if recording.document_id in n and n.endswith(".custody.json")]
        if not proof:
            violations.append(f"DELETE of {recording.document_id} before its chain-of-custody record")
            return
        record = await (await container.get_blob_client(proof[0]).download_blob()).readall()
        if CustodyRecord.model_validate_json(record).sha256 != recording.sha256:
            violations.append(f"DELETE of {recording.document_id} proved by another file's hash")

    stack.simulator.on_delete = deletes_only_verified
    host = await stack.local_host(**overrides)
    yield Pipeline(stack, runtime, host, container, violations)
    await asyncio.wait_for(host.stop(), 60)
    await runtime.close()


def _chunks(stack: Stack, sizes: list[int], fmt: str = "mp4", prefix: str = "doc") -> list[SimRecording]:
    return [
        stack.simulator.add(f"{prefix}-{i}", size, fmt, chunk_index=i, call_id=CALL) for i, size in enumerate(sizes)
    ]


async def test_bursts_of_503_and_429_with_retry_after(pipeline: Pipeline) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [9 * MIB, 2 * MIB])
    sim.faults += [
        Fault(kind="metadata", status=503, times=3),
        Fault(kind="media", status=429, retry_after=0.3, times=2),
        Fault(kind="media", status=503, times=2),
    ]
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    manifest = await pipeline.wait_archived(chunks)
    await pipeline.assert_identical(manifest, chunks)
    assert all(f.times == 0 for f in sim.faults)
    assert sum(1 for r in sim.requests if r.status == 429) == 2


async def test_connection_reset_mid_body_resumes_with_range(pipeline: Pipeline) -> None:
    sim = pipeline.stack.simulator
    block = pipeline.runtime.settings.transfer.block_size
    chunks = _chunks(pipeline.stack, [6 * block + 1234])
    sim.faults.append(Fault(kind="media", action="reset", body_bytes=3 * block + 500))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    manifest = await pipeline.wait_archived(chunks)
    await pipeline.assert_identical(manifest, chunks)
    ranges = [r.range for r in sim.requests if r.kind == "media" and r.status in (200, 206)]
    assert ranges[0] is None and ranges[1] is not None
    resumed_from = int(ranges[1].split("=")[1].rstrip("-"))
    assert resumed_from % block == 0 and resumed_from >= block  # whole blocks kept, not restarted from zero


async def test_truncated_body_is_detected_and_repaired(pipeline: Pipeline) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [5 * MIB + 3])
    sim.faults.append(Fault(kind="media", action="truncate", body_bytes=2 * MIB + 7))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    manifest = await pipeline.wait_archived(chunks)
    await pipeline.assert_identical(manifest, chunks)
    assert sim.count("GET", "media") == 2


@pytest.mark.parametrize("pipeline", [{"ACS_READ_TIMEOUT_SECONDS": "1"}], indirect=True)
async def test_stalled_body_times_out_and_resumes(pipeline: Pipeline) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [5 * MIB])
    sim.faults.append(Fault(kind="media", action="stall", body_bytes=MIB, stall_seconds=8))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    manifest = await pipeline.wait_archived(chunks, timeout=60)
    await pipeline.assert_identical(manifest, chunks)


async def test_empty_body_right_after_the_event_is_retried(pipeline: Pipeline) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [MIB])
    sim.faults.append(Fault(kind="media", action="empty", times=2))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    manifest = await pipeline.wait_archived(chunks)
    await pipeline.assert_identical(manifest, chunks)
    assert manifest["chunks"]["00000"]["size"] == MIB


async def test_html_400_is_not_parsed_and_the_job_is_tried_again(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [MIB])
    sim.faults.append(Fault(kind="media", status=400, html_body=True))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    manifest = await pipeline.wait_archived(chunks)
    await pipeline.assert_identical(manifest, chunks)
    assert any("400" in r.getMessage() and "attempt 1 of 4" in r.getMessage() for r in caplog.records)


async def test_delete_failing_then_succeeding(pipeline: Pipeline) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [2 * MIB])
    sim.faults.append(Fault(method="DELETE", kind="delete", status=503, times=3))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    manifest = await pipeline.wait_archived(chunks)
    await pipeline.assert_identical(manifest, chunks)
    assert chunks[0].document_id in sim.deleted
    assert sum(1 for r in sim.requests if r.method == "DELETE" and r.status == 200) == 1
    assert sim.count("GET", "media") == 1  # DELETE retries never re-download


async def test_same_event_ten_times_concurrently(pipeline: Pipeline) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [7 * MIB, 3 * MIB, MIB])
    event = sim.event(CALL, REC, chunks)
    await asyncio.gather(*(pipeline.deliver([event]) for _ in range(10)))
    await pipeline.wait_archived(chunks)

    async def queue_empty() -> bool:
        return await pipeline.stack.peek() == []

    await wait_until(queue_empty, timeout=120)
    await asyncio.sleep(0.5)
    manifest = await pipeline.manifest()
    assert manifest is not None
    await pipeline.assert_identical(manifest, chunks)
    for chunk in chunks:
        assert sim.count("GET", "media", chunk.document_id) == 1, "an archived chunk was downloaded again"
        assert (
            sum(
                1
                for r in sim.requests
                if r.method == "DELETE" and r.document_id == chunk.document_id and r.status == 200
            )
            == 1
        )


async def test_chunks_in_separate_out_of_order_events(pipeline: Pipeline) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [2 * MIB, MIB, 3 * MIB])
    for chunk in (chunks[2], chunks[0]):
        await pipeline.deliver([sim.event(CALL, REC, [chunk], final_index=2)])
    await pipeline.wait_archived([chunks[2], chunks[0]])
    partial = await pipeline.manifest()
    assert partial is not None and partial["state"] == "incomplete"
    await pipeline.deliver([sim.event(CALL, REC, [chunks[1]], final_index=2)])
    manifest = await pipeline.wait_archived(chunks)
    assert manifest["state"] == "complete"
    await pipeline.assert_identical(manifest, chunks)


async def test_chunk_gone_from_acs_is_recorded_lost_not_retried(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [MIB, MIB])
    event = sim.event(CALL, REC, chunks)
    del sim.recordings[chunks[1].document_id]  # expired before we got to it
    caplog.set_level(logging.INFO)
    await pipeline.deliver([event])

    async def lost() -> dict[str, Any] | None:
        manifest = await pipeline.manifest()
        return (
            manifest
            if manifest and manifest["state"] == "lost" and manifest["chunks"].get("00000", {}).get("sourceDeletedAt")
            else None
        )

    manifest = await wait_until(lost)
    assert manifest["chunks"]["00001"]["state"] == "lost"
    record = [n async for n in pipeline.container.list_blob_names(name_starts_with="_lost/")]
    assert record == [f"_lost/{CALL}/r-{REC}/00001-{chunks[1].document_id}.json"]
    lost_logs = [r for r in caplog.records if "recording chunk lost" in r.getMessage()]
    assert len(lost_logs) == 1 and lost_logs[0].levelno == logging.ERROR
    assert getattr(lost_logs[0], "document_id", None) == chunks[1].document_id
    assert sim.count("GET", "metadata", chunks[1].document_id, authorized_only=False) == 1  # not retried


async def test_unauthorized_is_a_loud_configuration_error_not_a_retry_storm(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [MIB])
    real_key = sim.access_key
    sim.access_key = "d3Jvbmcga2V5IGZvciB0aGlzIHRlc3Q="
    await pipeline.deliver([sim.event(CALL, REC, chunks)])

    async def two_attempts() -> bool:
        return sum(1 for r in sim.requests if r.status == 401) >= 2

    await wait_until(two_attempts, timeout=30)
    # One request per job attempt: 401 is not retried inside the attempt.
    assert any("refused our credentials" in r.getMessage() for r in caplog.records)
    sim.access_key = real_key
    manifest = await pipeline.wait_archived(chunks)
    await pipeline.assert_identical(manifest, chunks)
    attempts = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage() and "of 4" in r.getMessage()]
    assert len(attempts) == sum(1 for r in sim.requests if r.status == 401)


@pytest.mark.parametrize("pipeline", [{"RECORDING_RETENTION_HOURS": "0.5"}], indirect=True)
async def test_poison_after_the_last_attempt_then_replay(pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    from recording_pipeline.cli.replay import replay_poison

    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [MIB])
    sim.faults.append(Fault(kind="metadata", status=500, times=10_000))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    queue = pipeline.runtime.queue

    async def poisoned() -> list[Any]:
        return await pipeline.stack.peek(poison=True)

    [message] = await wait_until(poisoned, timeout=120)
    body = json.loads(message.content)
    # host.json's maxDequeueCount is 5: four deliveries do the work, the fifth is kept for the app's decision.
    assert body["attempts"] == 4 and "AcsTransientError" in body["error"] and body["job"]["document_id"] == "doc-0"
    # What the poison-queue alert in infra/modules/alerts.bicep queries for.
    assert any(
        r.levelno == logging.ERROR
        and "recording chunk failed after" in r.getMessage()
        and queue.poison_name in r.getMessage()
        for r in caplog.records
    )

    # The poison message goes first, the manifest (a view) after it.
    async def failed() -> bool:
        manifest = await pipeline.manifest()
        return manifest is not None and manifest["chunks"]["00000"]["state"] == "failed"

    await wait_until(failed, timeout=30)
    sim.faults.clear()
    assert await replay_poison(queue, pipeline.runtime.state) == (1, 0)
    manifest = await pipeline.wait_archived(chunks)
    await pipeline.assert_identical(manifest, chunks)
    assert manifest["chunks"]["00000"]["state"] == "archived"


async def test_azurite_restarted_mid_transfer(pipeline: Pipeline) -> None:
    sim, azurite = pipeline.stack.simulator, pipeline.stack.azurite
    chunks = _chunks(pipeline.stack, [24 * MIB])
    sim.faults.append(Fault(kind="media", action="stall", body_bytes=10 * MIB, stall_seconds=3))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])

    async def streaming() -> bool:
        return sim.bytes_served.get(chunks[0].document_id, 0) >= 10 * MIB

    await wait_until(streaming, timeout=30)
    await asyncio.to_thread(azurite.restart)
    manifest = await pipeline.wait_archived(chunks, timeout=240)
    await pipeline.assert_identical(manifest, chunks)


async def test_large_metadata_arrives_in_many_reads(pipeline: Pipeline) -> None:
    """A big call's metadata (thousands of participants) spans many network reads; none may be cut off."""
    sim = pipeline.stack.simulator
    participants = [f"8:acs:{i:08d}-aaaa-bbbb-cccc-{i:012d}" for i in range(3000)]
    [chunk] = [sim.add("doc-big-meta", MIB, "mp4", chunk_index=0, call_id=CALL, participants=participants)]
    assert len(chunk.metadata()) > 150_000
    await pipeline.deliver([sim.event(CALL, REC, [chunk])])
    manifest = await pipeline.wait_archived([chunk])
    await pipeline.assert_identical(manifest, [chunk])
    stored = await (
        await pipeline.container.get_blob_client(manifest["chunks"]["00000"]["metadataBlob"]).download_blob()
    ).readall()
    assert stored == chunk.metadata()
    assert sim.count("GET", "metadata") == 1


async def test_an_outage_longer_than_one_message_s_attempts_is_waited_out_not_poisoned(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """With hours left before the deadline, a job that exhausted its attempts comes back later by itself."""
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [MIB])
    per_attempt = pipeline.runtime.acs.retry.attempts
    outage = 4 * per_attempt + 2  # every try of all four queue attempts, and then some
    sim.faults.append(Fault(kind="metadata", status=503, times=outage))
    await pipeline.deliver([sim.event(CALL, REC, chunks)])
    manifest = await pipeline.wait_archived(chunks, timeout=180)
    await pipeline.assert_identical(manifest, chunks)
    assert sim.faults[0].times == 0
    assert manifest["chunks"]["00000"]["requeues"] == 1
    assert await pipeline.stack.peek(poison=True) == []
    assert any(
        "still failing after 4 queue attempts" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


async def test_a_404_after_another_attempt_archived_and_deleted_it_is_not_lost(
    pipeline: Pipeline, write_once: Guard
) -> None:
    """A duplicate whose ACS reads were slow can meet the 404 the winner's DELETE caused: not a lost chunk."""
    sim = pipeline.stack.simulator
    chunks = _chunks(pipeline.stack, [MIB])
    event = sim.event(CALL, REC, chunks)
    await pipeline.deliver([event])
    manifest = await pipeline.wait_archived(chunks)
    # The duplicate's view: no archived metadata yet (as when it looked before the winner wrote it).
    metadata_blob = manifest["chunks"]["00000"]["metadataBlob"]
    write_once.allow(pipeline.stack.container, metadata_blob)  # tampered with on purpose
    await pipeline.container.get_blob_client(metadata_blob).delete_blob()
    [job] = plan_jobs(
        parse_recording_event(read_envelope(event, "eventgrid")),
        pipeline.runtime.webhook.acs_endpoint,
        24,
        pipeline.runtime.webhook.url_policy,
    )
    assert await handle_chunk_message(encode_job(job), 1, pipeline.runtime.worker) is Outcome.ALREADY_ARCHIVED
    assert [n async for n in pipeline.container.list_blob_names(name_starts_with="_lost/")] == []
    after = await pipeline.manifest()
    assert after is not None and after["state"] == "complete"


async def test_a_copy_is_not_deleted_from_acs_when_acs_never_stated_its_size(pipeline: Pipeline) -> None:
    """Without a size, a connection closed early is indistinguishable from the end: keep the source."""
    sim = pipeline.stack.simulator
    [chunk] = _chunks(pipeline.stack, [3 * MIB + 1])
    chunk.declare_size = False
    await pipeline.deliver([sim.event(CALL, REC, [chunk])])

    async def archived() -> dict[str, Any] | None:
        manifest = await pipeline.manifest()
        entry = (manifest or {}).get("chunks", {}).get("00000", {})
        return manifest if entry.get("sourceKeptReason") else None

    manifest = await wait_until(archived)
    await pipeline.assert_identical(manifest, [chunk])
    assert chunk.document_id not in sim.deleted and sim.count("DELETE") == 0


async def test_a_failed_block_upload_fails_the_transfer_instead_of_vanishing(stack: Stack) -> None:
    """The first staging error is raised by copy_to_blocks itself, not discovered later as a bad block list."""
    from recording_pipeline.app.transfer import copy_to_blocks
    from recording_pipeline.edges.archive import BlobArchive

    class FailingThirdBlock(BlobArchive):
        async def stage_block(self, name: str, block_id: str, data: bytes, md5: bytes | None = None) -> None:
            if block_id.endswith("-00000002"):
                raise OSError("storage refused block 2")
            await super().stage_block(name, block_id, data, md5)

    sim = stack.simulator
    [chunk] = [sim.add("doc-stage-fails", 6 * MIB, call_id=CALL)]
    runtime = await stack.runtime(TRANSFER_BLOCK_SIZE_MIB="1")
    try:
        store = FailingThirdBlock(runtime.archive._service, stack.container)
        with pytest.raises(OSError, match="refused block 2"):
            await copy_to_blocks(runtime.acs, store, sim.chunk_urls(chunk)["contentLocation"], "x.mp4", MIB, 2)
    finally:
        await runtime.close()


async def test_every_block_staged_but_not_committed_is_committed_without_a_download(stack: Stack) -> None:
    """An attempt whose time ran out between its last staged block and the commit: the next one asks for the
    bytes from the file's very end, ACS's storage answers 416 with the size, and the staged blocks are committed."""
    from recording_pipeline.app.transfer import block_id, commit_blocks, copy_to_blocks

    sim = stack.simulator
    chunk = sim.add("doc-all-staged", 4 * MIB, call_id=CALL)
    runtime = await stack.runtime()
    try:
        name = f"{CALL}/all-staged.mp4"
        media = b"".join(content_segments(chunk.seed, 0, chunk.size))
        for index in range(4):
            await runtime.archive.stage_block(name, block_id(index, MIB), media[index * MIB : (index + 1) * MIB])
        url = sim.chunk_urls(chunk)["contentLocation"]
        result = await copy_to_blocks(runtime.acs, runtime.archive, url, name, MIB, 4)
        assert (result.size, result.resumed_from, len(result.block_ids)) == (4 * MIB, 4 * MIB, 4)
        assert await commit_blocks(runtime.archive, name, result, "video/mp4", {}, {})
        stored, _info = await runtime.archive.read_blob(name, limit=8 * MIB) or (b"", None)
        assert hashlib.sha256(stored).hexdigest() == chunk.sha256
        [asked] = [r for r in sim.requests if r.document_id == chunk.document_id and r.kind == "media"]
        assert (asked.range, asked.status) == (f"bytes={4 * MIB}-", 416)
    finally:
        await runtime.close()
