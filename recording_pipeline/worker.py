"""archive_chunk: the per-chunk state machine, and the queue-message entry point.

    metadata (archive, else ACS) → lease → media (resume staged blocks) →
    commit (only if absent) → verify (blocks, size, sha256) → manifest →
    participant index → DELETE from ACS

Each step first looks at what the archive already holds, so any number of
attempts, duplicates or crashes converge on one verified copy; the DELETE
comes last and only after verification.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from azure.storage.blob.aio import BlobLeaseClient

from .acs import AcsRecordingClient
from .archive import ArchiveStore, BlobInfo
from .attempts import AttemptPolicy, AttemptProgress, Failure, Verdict
from .chunk_queue import ChunkQueue
from .errors import (
    AcsAuthError,
    AcsTransientError,
    ArchiveIntegrityError,
    AttemptTimeoutError,
    InvalidEventError,
    NoAnswerError,
    RecordingGoneError,
)
from .jobs import RecordingChunk, decode_job
from .manifest import record_chunk
from .naming import (
    lost_name,
    manifest_name,
    media_format,
    media_name,
    metadata_name,
    participant_entry,
    quarantine_invalid_name,
    quarantine_name,
)
from .quarantine import QuarantineRecord
from .telemetry import (
    BYTES_ARCHIVED,
    CHUNK_DURATION,
    CHUNK_THROUGHPUT,
    FAILURES,
    OUTCOMES,
    SECONDS_LEFT,
    log_context,
    span_attributes,
    tracer,
)
from .transfer import TransferResult, copy_to_blocks

log = logging.getLogger(__name__)

LEASE_SECONDS = 15  # the shortest the service allows: a dead worker's lease frees up soon
LEASE_WAIT_SECONDS = 2 * LEASE_SECONDS + 5
LEASE_POLL_SECONDS = 1.0
MAX_PARTICIPANTS = 200


class Outcome(StrEnum):
    ARCHIVED = "archived"
    ALREADY_ARCHIVED = "already-archived"
    IN_PROGRESS_ELSEWHERE = "in-progress-elsewhere"
    LOST = "lost"


@dataclass
class ChunkWorker:
    """What archive_chunk needs; built once per process."""

    acs: AcsRecordingClient
    store: ArchiveStore
    queue: ChunkQueue
    block_size: int
    concurrency: int
    policy: AttemptPolicy
    attempt_seconds: float | None = None  # an attempt ends itself after this (inside the host's functionTimeout)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ready: Callable[[], Awaitable[None]] | None = None  # once per process: the container and queues exist


async def handle_chunk_message(text: str, dequeue_count: int, worker: ChunkWorker) -> Outcome | None:
    """Entry point for one queue message, shared by the Functions trigger and the local host.

    Returns normally when the message may be deleted: done, continued or put
    back on the queue for later as a fresh message, or quarantined with its
    error. Raises to have the host deliver it again (host.json
    ``visibilityTimeout``). The decision itself is AttemptPolicy's.
    """
    try:
        job = decode_job(text)
    except InvalidEventError as exc:
        log.error("rejected queue message: %s", exc)
        await _quarantine_text(text, exc, dequeue_count, worker)
        return None
    with log_context(
        event_id=job.event_id,
        call_id=job.call_id,
        recording_id=job.recording_id,
        chunk_index=job.chunk_index,
        document_id=job.document_id,
    ):
        if not worker.policy.runs(dequeue_count):
            # The previous delivery ended without an answer: killed, timed out or out of memory. The host
            # poisons the next one unseen, so decide now, without starting any long work.
            log.warning("delivery %d: the previous attempt ended without an answer", dequeue_count)
            error = NoAnswerError(f"attempt {dequeue_count - 1} ended without an answer (killed or timed out)")
            await _decide(job, Failure.NO_ANSWER, error, dequeue_count, False, worker)
            return None
        progress = AttemptProgress()
        try:
            with tracer.start_as_current_span("archive_chunk", attributes=span_attributes()) as span:
                span.set_attribute("messaging.dequeue_count", dequeue_count)
                outcome = await _attempt(job, worker, progress)
                span.set_attribute("recording.outcome", outcome.value)
            OUTCOMES.add(1, {"outcome": outcome.value})
            return outcome
        except Exception as exc:
            FAILURES.add(1, {"kind": type(exc).__name__})
            failure = (
                Failure.INVALID
                if isinstance(exc, InvalidEventError)
                else Failure.OUT_OF_TIME
                if isinstance(exc, AttemptTimeoutError)
                else Failure.ERROR
            )
            await _decide(job, failure, exc, dequeue_count, progress.staged_bytes > 0, worker)
            return None


async def _attempt(job: RecordingChunk, worker: ChunkWorker, progress: AttemptProgress) -> Outcome:
    """One attempt, ended by its own deadline (a normal exception) well before the host's functionTimeout."""
    timeout = asyncio.timeout(worker.attempt_seconds)
    try:
        async with timeout:
            if worker.ready is not None:
                await worker.ready()
            return await archive_chunk(job, worker, progress)
    except TimeoutError:
        if timeout.expired():
            raise AttemptTimeoutError(
                f"attempt stopped after {worker.attempt_seconds:.0f} s, before the host's functionTimeout; "
                f"{progress.staged_bytes} bytes staged in it"
            ) from None
        raise


async def _decide(
    job: RecordingChunk, failure: Failure, exc: Exception, dequeue_count: int, progressed: bool, worker: ChunkWorker
) -> None:
    """Act on AttemptPolicy's decision; raising is the RETRY verdict (the host delivers the message again)."""
    policy = worker.policy
    decision = policy.decide(failure, dequeue_count, job.requeues, job.seconds_left(worker.clock()), progressed)
    error = f"{type(exc).__name__}: {exc}"
    if decision.verdict is Verdict.RETRY:
        log.warning("attempt %d of %d failed: %s", dequeue_count, policy.attempts_per_message, error)
        raise exc
    if decision.verdict is Verdict.CONTINUE:
        await worker.queue.enqueue_later(job, 0)
        log.info("%s; continuing at once in a fresh message", error)
        return
    if decision.verdict is Verdict.REQUEUE_LATER:
        await _requeue_later(job, error, decision.delay_seconds, worker)
        return
    log.error(
        "recording chunk failed after %d attempts, moved to %s: %s",
        policy.attempts_per_message * job.requeues + min(dequeue_count, policy.attempts_per_message),
        worker.queue.poison_name,
        error,
    )
    await _quarantine(job, error, dequeue_count, worker)
    OUTCOMES.add(1, {"outcome": "poisoned"})


async def archive_chunk(job: RecordingChunk, worker: ChunkWorker, progress: AttemptProgress | None = None) -> Outcome:
    store, now = worker.store, worker.clock()
    left = job.seconds_left(now)
    if left < 0:
        log.warning("chunk is %.0f s past its retention deadline; trying anyway", -left)
    meta_blob = metadata_name(job.stem)
    try:
        metadata = await _metadata(job, worker, meta_blob)
    except RecordingGoneError as exc:
        return await _record_lost(job, worker, exc)
    extension, content_type = media_format(_format_of(metadata), job.format_hint)
    media_blob = media_name(job.stem, extension)

    info = await store.info(media_blob)
    outcome = Outcome.ALREADY_ARCHIVED
    started = worker.clock()
    result: TransferResult | None = None
    if not _verified(info):
        async with _lease(store, meta_blob) as lease:
            if lease is None:
                # That worker's message will be retried if it dies; but if it *is* this message (its
                # invisibility lapsed), deleting ours would leave none. A delayed copy closes that gap:
                # it finds the chunk archived and only repeats the idempotent DELETE.
                await worker.queue.enqueue_later(job, worker.policy.requeue_delay_seconds)
                log.info("a live worker holds this chunk; leaving it to that worker, checking again later")
                return Outcome.IN_PROGRESS_ELSEWHERE
            info = await store.info(media_blob)
            if info is None:
                try:
                    # Download and block upload overlap, so they share one span.
                    with tracer.start_as_current_span("transfer", attributes=span_attributes()) as span:
                        result = await copy_to_blocks(
                            worker.acs,
                            store,
                            job.content_url,
                            media_blob,
                            worker.block_size,
                            worker.concurrency,
                            progress=progress,
                        )
                        span.set_attributes(
                            {"recording.bytes": result.size, "recording.resumed_from": result.resumed_from}
                        )
                except RecordingGoneError as exc:
                    return await _record_lost(job, worker, exc)
                with tracer.start_as_current_span("archive.commit", attributes=span_attributes()):
                    await store.commit_new(media_blob, result.block_ids, content_type, _blob_metadata(job, result))
                    info = await store.info(media_blob)
            if not _verified(info):
                with tracer.start_as_current_span("archive.verify", attributes=span_attributes()):
                    info = await _verify(store, media_blob, info, result)
            outcome = Outcome.ARCHIVED
    assert info is not None
    finished = worker.clock()
    left = job.seconds_left(finished)
    await _update_manifest(
        job,
        worker,
        "archived",
        mediaBlob=media_blob,
        metadataBlob=meta_blob,
        contentType=content_type,
        size=info.size,
        sha256=info.metadata.get("sha256"),
        archivedAt=finished.isoformat(),
        secondsLeftAtArchive=round(left),
        transferSeconds=round((finished - started).total_seconds(), 3) if result else None,
        resumedFromByte=result.resumed_from if result and result.resumed_from else None,
    )
    await _index_participants(job, worker, metadata)
    if outcome is Outcome.ARCHIVED:
        elapsed = max((finished - started).total_seconds(), 1e-6)
        BYTES_ARCHIVED.add(info.size)
        CHUNK_DURATION.record(elapsed)
        CHUNK_THROUGHPUT.record(info.size / elapsed / 1e6)
        SECONDS_LEFT.record(left)
        log.info(
            "recording chunk archived: %d bytes to %s, %.1f h before the deadline",
            info.size,
            media_blob,
            left / 3600,
            extra={"bytes": info.size, "seconds_left": round(left), "blob": media_blob},
        )
    await _delete_from_acs(job, worker, info)
    return outcome


async def _metadata(job: RecordingChunk, worker: ChunkWorker, meta_blob: str) -> dict[str, Any]:
    """The chunk's metadata document: the archived copy if there is one, else fetched from ACS and archived."""
    archived = await worker.store.read_bytes(meta_blob)
    if archived is not None:
        return _parse_metadata(archived[0])
    with tracer.start_as_current_span("acs.download_metadata", attributes=span_attributes()):
        body = await worker.acs.fetch_metadata(job.metadata_url)
    document = _parse_metadata(body)  # not JSON → transient: ACS sometimes serves it half-ready
    named = document.get("chunkDocumentId")
    if named is not None and named != job.document_id:
        raise InvalidEventError(f"metadata at metadataLocation describes chunk {str(named)[:80]}, not this one")
    digest = hashlib.sha256(body).hexdigest()
    created = await worker.store.create(
        meta_blob,
        body,
        "application/json",
        {"sha256": digest, "source_size": str(len(body)), "document_id": job.document_id},
    )
    if not created:  # another attempt wrote it first: what it wrote must be what ACS serves now
        stored = await worker.store.read_bytes(meta_blob)
        if stored is None or hashlib.sha256(stored[0]).hexdigest() != digest:
            raise ArchiveIntegrityError(f"{meta_blob}: archived metadata differs from what ACS served")
    return document


def _parse_metadata(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AcsTransientError("metadata is not JSON") from None
    if not isinstance(doc, dict):
        raise AcsTransientError("metadata is not a JSON object")
    return doc


def _format_of(metadata: dict[str, Any]) -> str | None:
    info = metadata.get("recordingInfo")
    value = info.get("format") if isinstance(info, dict) else None
    return value if isinstance(value, str) else None


def _blob_metadata(job: RecordingChunk, result: TransferResult) -> dict[str, str]:
    meta = {
        "source_size_declared": "true" if result.size_declared else "false",
        "source_size": str(result.size),
        "call_id": job.call_id,
        "recording_key": job.recording_key,
        "chunk_index": str(job.chunk_index),
        "document_id": job.document_id,
    }
    if result.sha256:
        meta["sha256"] = result.sha256
    return meta


def _verified(info: BlobInfo | None) -> bool:
    if info is None:
        return False
    meta = info.metadata
    return bool(meta.get("verified_at")) and bool(meta.get("sha256")) and meta.get("source_size") == str(info.size)


async def _verify(
    store: ArchiveStore, media_blob: str, info: BlobInfo | None, result: TransferResult | None
) -> BlobInfo:
    """Prove the committed blob is the file ACS served; only then may the source be deleted."""
    if info is None:
        raise ArchiveIntegrityError(f"{media_blob}: not found after commit")
    source_size = info.metadata.get("source_size")
    if source_size != str(info.size):
        raise ArchiveIntegrityError(f"{media_blob}: {info.size} bytes archived, ACS served {source_size}")
    committed = await store.committed_blocks(media_blob)
    if sum(b.size for b in committed) != info.size:
        raise ArchiveIntegrityError(f"{media_blob}: committed blocks do not add up to the blob's size")
    if result is not None and [b.block_id for b in committed] != result.block_ids:
        raise ArchiveIntegrityError(f"{media_blob}: committed block list is not the one staged")
    sha256 = info.metadata.get("sha256")
    if not sha256 or result is None:
        # Resumed (or committed by an attempt that died before recording its hash): hash what is archived.
        hasher = hashlib.sha256()
        size = 0
        async for piece in store.stream(media_blob):
            size += len(piece)
            await asyncio.to_thread(hasher.update, piece)
        if size != info.size:
            raise ArchiveIntegrityError(f"{media_blob}: read back {size} bytes of {info.size}")
        if sha256 and sha256 != hasher.hexdigest():
            raise ArchiveIntegrityError(f"{media_blob}: sha256 of the archive differs from the recorded one")
        sha256 = hasher.hexdigest()
    metadata = {**info.metadata, "sha256": sha256, "verified_at": datetime.now(UTC).isoformat()}
    await store.set_metadata(media_blob, metadata)
    return BlobInfo(info.name, info.size, info.etag, metadata)


async def _delete_from_acs(job: RecordingChunk, worker: ChunkWorker, info: BlobInfo) -> None:
    if not job.delete_url:
        return
    if info.metadata.get("source_size_declared") == "false":
        # Without a size from ACS, a connection closed early looks like the end of the file: the copy
        # cannot be proved whole, so the source stays (ACS removes it at its deadline).
        log.warning("ACS never stated this file's size; leaving it in ACS rather than deleting an unproved copy")
        await _update_manifest(job, worker, "archived", sourceKeptReason="ACS did not state the file's size")
        return
    try:
        with tracer.start_as_current_span("acs.delete", attributes=span_attributes()):
            deleted = await worker.acs.delete(job.delete_url)
    except AcsAuthError:
        log.error("ACS refused the DELETE of an archived chunk: check the credentials' rights")
        raise
    now = worker.clock()
    await _update_manifest(job, worker, "archived", sourceDeletedAt=now.isoformat())
    log.info("deleted from ACS after verification" if deleted else "already gone from ACS (counts as deleted)")


async def _record_lost(job: RecordingChunk, worker: ChunkWorker, exc: RecordingGoneError) -> Outcome:
    """ACS answered 404. Lost, unless another attempt archived and deleted it meanwhile."""
    archived = await _verified_copy(job, worker.store)
    if archived is not None:
        log.info("ACS no longer has the chunk, and the archive holds its verified copy %s", archived.name)
        return Outcome.ALREADY_ARCHIVED
    now = worker.clock()
    record = {
        "job": json.loads(job.model_dump_json()),
        "reason": str(exc),
        "detectedAt": now.isoformat(),
        "secondsPastDeadline": round(-job.seconds_left(now)),
    }
    await worker.store.create(lost_name(job.stem), json.dumps(record, indent=1).encode(), "application/json")
    await _update_manifest(job, worker, "lost", lostAt=now.isoformat(), lastError=str(exc))
    log.error(
        "recording chunk lost: ACS no longer has it and it was never archived (%s)", exc, extra={"outcome": "lost"}
    )
    return Outcome.LOST


async def _verified_copy(job: RecordingChunk, store: ArchiveStore) -> BlobInfo | None:
    async for name in store.list_names(f"{job.stem}."):
        if not name.endswith(".json"):
            info = await store.info(name)
            if _verified(info):
                return info
    return None


async def _requeue_later(job: RecordingChunk, error: str, delay: int, worker: ChunkWorker) -> None:
    """Try again later, as a fresh message, while the deadline is far.

    ACS keeps a chunk 24 hours: an outage of ACS, storage or our credentials,
    or a crash loop, that outlasts one message's attempts must not end in the
    poison queue while hours remain.
    """
    left = job.seconds_left(worker.clock())
    await worker.queue.enqueue_later(job.model_copy(update={"requeues": job.requeues + 1}), delay)
    log.error(
        "recording chunk still failing after %d queue attempts (%s); trying again in %d min, %.1f h before the "
        "deadline",
        worker.policy.attempts_per_message * (job.requeues + 1),
        error,
        delay // 60,
        left / 3600,
        extra={"requeues": job.requeues + 1, "seconds_left": round(left)},
    )
    try:
        await _update_manifest(job, worker, "pending", lastError=error, requeues=job.requeues + 1)
    except Exception:  # the requeued message is what matters
        log.exception("could not record the failure in the manifest")


async def _quarantine(job: RecordingChunk, error: str, dequeue_count: int, worker: ChunkWorker) -> None:
    """The job, its error and its attempts: a durable record in the archive, and a poison message that never
    expires. Either is enough for ``replay --poison``; the manifest is a view."""
    attempts = worker.policy.attempts_per_message * job.requeues + min(
        dequeue_count, worker.policy.attempts_per_message
    )
    record = QuarantineRecord(error, attempts, worker.clock(), json.loads(job.model_dump_json()), None)
    await _keep_quarantined(quarantine_name(job.stem), record, worker)
    try:
        await _update_manifest(job, worker, "failed", lastError=error, failedAt=record.quarantined_at.isoformat())
    except Exception:
        log.exception("could not record the failure in the manifest")


async def _quarantine_text(text: str, exc: Exception, dequeue_count: int, worker: ChunkWorker) -> None:
    record = QuarantineRecord(f"{type(exc).__name__}: {exc}", dequeue_count, worker.clock(), None, text)
    await _keep_quarantined(quarantine_invalid_name(text), record, worker)


async def _keep_quarantined(name: str, record: QuarantineRecord, worker: ChunkWorker) -> None:
    """Both copies are attempted; the message is deleted only if at least one was written."""
    results = await asyncio.gather(
        worker.store.create(name, record.to_json(), "application/json"),
        worker.queue.send_poison(record),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    for problem in failed:
        log.error("could not keep a quarantined job: %s: %s", type(problem).__name__, problem)
    if len(failed) == len(results):
        raise failed[0]


async def _update_manifest(job: RecordingChunk, worker: ChunkWorker, state: str, **fields: Any) -> None:
    now = worker.clock()
    await worker.store.update_json(
        manifest_name(job.call_id, job.recording_key), lambda doc: record_chunk(doc, job, now, state, **fields)
    )


async def _index_participants(job: RecordingChunk, worker: ChunkWorker, metadata: dict[str, Any]) -> None:
    """One small blob per (participant, recording): a prefix listing answers "which recordings"."""
    participants = metadata.get("participants")
    if not isinstance(participants, list):
        return
    ids = {p.get("participantId") for p in participants[:MAX_PARTICIPANTS] if isinstance(p, dict)}
    entry = json.dumps(
        {
            "callId": job.call_id,
            "recordingId": job.recording_id,
            "recordingKey": job.recording_key,
            "recordingStartTime": job.recording_start_time.isoformat() if job.recording_start_time else None,
            "manifest": manifest_name(job.call_id, job.recording_key),
        }
    ).encode()
    await asyncio.gather(
        *(
            worker.store.create(participant_entry(pid, job.call_id, job.recording_key), entry, "application/json")
            for pid in ids
            if isinstance(pid, str) and pid
        )
    )


@asynccontextmanager
async def _lease(store: ArchiveStore, blob: str) -> AsyncIterator[BlobLeaseClient | None]:
    """Hold a renewed lease on ``blob`` while the chunk is copied.

    If another holder has it, wait: a lease nobody renews expires within
    LEASE_SECONDS (a crashed worker, whose message is very likely the one we are
    processing now), so only a lease held throughout LEASE_WAIT_SECONDS proves a
    live worker, whose own queue message is in flight and will be retried if it
    dies. Then, and only then, None: this duplicate may stop. The lease saves
    work; correctness comes from deterministic blocks, commit-if-absent and
    verification, so two writers at once would still converge on one copy.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEASE_WAIT_SECONDS
    lease = await store.try_lease(blob, LEASE_SECONDS)
    while lease is None and loop.time() < deadline:
        await asyncio.sleep(LEASE_POLL_SECONDS)
        lease = await store.try_lease(blob, LEASE_SECONDS)
    if lease is None:
        yield None
        return
    held = lease

    async def renew() -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                await held.renew()
            except Exception as exc:  # losing the lease costs efficiency, never correctness
                log.warning("could not renew the lease on %s: %s", blob, exc)

    renewer = asyncio.create_task(renew())
    try:
        yield lease
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        try:
            await lease.release()
        except Exception:  # an unreleased lease simply expires in LEASE_SECONDS
            log.warning("could not release the lease on %s", blob)
