"""The steps of core.lifecycle, performed: each does its I/O and reports what it observed.

One ChunkRun per attempt holds what the steps learn on the way (the metadata
document, the media blob's name and properties, the transfer's result). The
order of steps is not decided here: ``archive_chunk`` asks ``next_step``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime

from recording_pipeline.app.manifests import record
from recording_pipeline.app.transfer import TransferResult, copy_to_blocks
from recording_pipeline.core.attempts import AttemptProgress
from recording_pipeline.core.errors import AcsAuthError, ArchiveIntegrityError, RecordingGoneError
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.lifecycle import ChunkFacts, Copy, Lease, Media, Metadata, Source, Step
from recording_pipeline.core.metadata import ChunkMetadata, parse_metadata
from recording_pipeline.core.naming import (
    lost_name,
    manifest_name,
    media_format,
    media_name,
    metadata_name,
    participant_entry,
)
from recording_pipeline.core.ports import ArchiveStore, BlobInfo, ChunkQueue, RecordingSource
from recording_pipeline.core.state import ChunkState, ChunkUpdate
from recording_pipeline.core.verification import (
    SHA256,
    SOURCE_SIZE,
    SOURCE_SIZE_DECLARED,
    VERIFIED_AT,
    check_committed,
    check_read_back,
    is_verified,
    source_size_declared,
)
from recording_pipeline.edges.telemetry import (
    BYTES_ARCHIVED,
    CHUNK_DURATION,
    CHUNK_THROUGHPUT,
    SECONDS_LEFT,
    span_attributes,
    tracer,
)

log = logging.getLogger(__name__)

JSON = "application/json"
LEASE_SECONDS = 15  # the shortest the service allows: a dead worker's lease frees up soon
# A lease nobody renews expires within LEASE_SECONDS (a crashed worker, whose message is very likely the one being
# processed now), so only one held throughout this long proves a live worker, whose own queue message is in flight.
LEASE_WAIT_SECONDS = 2 * LEASE_SECONDS + 5


@dataclass
class ChunkDeps:
    """What the steps need; built once per process."""

    acs: RecordingSource
    store: ArchiveStore
    queue: ChunkQueue
    block_size: int
    concurrency: int
    requeue_delay_seconds: int
    clock: Callable[[], datetime]


@dataclass
class ChunkRun:
    """One attempt at one chunk: what its steps have learned so far."""

    job: RecordingChunk
    deps: ChunkDeps
    progress: AttemptProgress = field(default_factory=AttemptProgress)
    metadata: ChunkMetadata | None = None
    media_blob: str = ""
    content_type: str = ""
    info: BlobInfo | None = None
    result: TransferResult | None = None
    archived_here: bool = False
    started: datetime | None = None
    gone: RecordingGoneError | None = None
    lease_scope: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def meta_blob(self) -> str:
        return metadata_name(self.job.stem)

    async def perform(self, step: Step, facts: ChunkFacts) -> ChunkFacts:
        handler: Callable[[ChunkFacts], Awaitable[ChunkFacts]] = getattr(self, "_" + step.value.replace("-", "_"))
        return await handler(facts)

    # --- the copy ----------------------------------------------------------------------------------

    async def _fetch_metadata(self, facts: ChunkFacts) -> ChunkFacts:
        """The archived copy if there is one, else ACS's, archived byte for byte."""
        store, job = self.deps.store, self.job
        archived = await store.read_bytes(self.meta_blob)
        if archived is not None:
            return self._knows(parse_metadata(archived[0]), facts)
        try:
            with tracer.start_as_current_span("acs.download_metadata", attributes=span_attributes()):
                body = await self.deps.acs.fetch_metadata(job.metadata_url)
        except RecordingGoneError as exc:
            self.gone = exc
            return facts.but(source=Source.GONE)
        metadata = parse_metadata(body, job.document_id)
        created = await store.create(
            self.meta_blob,
            body,
            JSON,
            {SHA256: metadata.sha256, SOURCE_SIZE: str(len(body)), "document_id": job.document_id},
        )
        if not created:  # another attempt wrote it first: what it wrote must be what ACS serves now
            stored = await store.read_bytes(self.meta_blob)
            if stored is None or parse_metadata(stored[0]).sha256 != metadata.sha256:
                raise ArchiveIntegrityError(f"{self.meta_blob}: archived metadata differs from what ACS served")
        return self._knows(metadata, facts)

    def _knows(self, metadata: ChunkMetadata, facts: ChunkFacts) -> ChunkFacts:
        self.metadata = metadata
        extension, self.content_type = media_format(metadata.format, self.job.format_hint)
        self.media_blob = media_name(self.job.stem, extension)
        return facts.but(metadata=Metadata.KNOWN)

    async def _look_up_media(self, facts: ChunkFacts) -> ChunkFacts:
        self.info = await self.deps.store.info(self.media_blob)
        if self.info is None:
            return facts.but(media=Media.ABSENT)
        source = facts.source
        if source is Source.PRESENT and not source_size_declared(self.info):
            source = Source.UNPROVABLE
        return facts.but(media=Media.VERIFIED if is_verified(self.info) else Media.COMMITTED, source=source)

    async def _lease(self, facts: ChunkFacts) -> ChunkFacts:
        """Hold the chunk while it is copied; the lease saves work, it does not make the copy correct."""
        held = await self.lease_scope.enter_async_context(
            self.deps.store.lease(self.meta_blob, LEASE_SECONDS, LEASE_WAIT_SECONDS)
        )
        if not held:
            return facts.but(lease=Lease.ELSEWHERE)
        return facts.but(lease=Lease.HELD, media=Media.UNKNOWN)  # look again: the holder may have finished

    async def _leave_to_holder(self, facts: ChunkFacts) -> ChunkFacts:
        # That worker's message will be retried if it dies; but if it *is* this message (its invisibility
        # lapsed), deleting ours would leave none. A delayed copy closes that gap: it finds the chunk archived
        # and only repeats the idempotent DELETE.
        await self.deps.queue.enqueue_later(self.job, self.deps.requeue_delay_seconds)
        log.info("a live worker holds this chunk; leaving it to that worker, checking again later")
        return facts.but(left=True)

    async def _copy(self, facts: ChunkFacts) -> ChunkFacts:
        deps = self.deps
        self.started = deps.clock()
        try:
            # Download and block upload overlap, so they share one span.
            with tracer.start_as_current_span("transfer", attributes=span_attributes()) as span:
                self.result = await copy_to_blocks(
                    deps.acs,
                    deps.store,
                    self.job.content_url,
                    self.media_blob,
                    deps.block_size,
                    deps.concurrency,
                    progress=self.progress,
                )
                span.set_attributes(
                    {"recording.bytes": self.result.size, "recording.resumed_from": self.result.resumed_from}
                )
        except RecordingGoneError as exc:
            self.gone = exc
            return facts.but(source=Source.GONE)
        if facts.source is Source.PRESENT and not self.result.size_declared:
            return facts.but(copied=True, source=Source.UNPROVABLE)
        return facts.but(copied=True)

    async def _commit(self, facts: ChunkFacts) -> ChunkFacts:
        assert self.result is not None
        result, job = self.result, self.job
        metadata = {
            SOURCE_SIZE_DECLARED: "true" if result.size_declared else "false",
            SOURCE_SIZE: str(result.size),
            "call_id": job.call_id,
            "recording_key": job.recording_key,
            "chunk_index": str(job.chunk_index),
            "document_id": job.document_id,
        }
        if result.sha256:
            metadata[SHA256] = result.sha256
        with tracer.start_as_current_span("archive.commit", attributes=span_attributes()):
            if await self.deps.store.commit_new(self.media_blob, result.block_ids, self.content_type, metadata):
                self.info = BlobInfo(self.media_blob, result.size, "", metadata)  # what we committed, as committed
            else:  # another attempt committed it first: look at what it wrote
                self.info = await self.deps.store.info(self.media_blob)
        if self.info is None:
            raise ArchiveIntegrityError(f"{self.media_blob}: not found after commit")
        return facts.but(media=Media.COMMITTED)

    async def _verify(self, facts: ChunkFacts) -> ChunkFacts:
        """Prove the committed blob is the file ACS served; only then may the source be deleted."""
        store, info, result = self.deps.store, self.info, self.result
        assert info is not None
        with tracer.start_as_current_span("archive.verify", attributes=span_attributes()):
            check_committed(info, await store.committed_blocks(self.media_blob), result.block_ids if result else None)
            sha256 = info.metadata.get(SHA256)
            if not sha256 or result is None:
                # Resumed (or committed by an attempt that died before recording its hash): hash what is archived.
                sha256, size = await store.sha256(self.media_blob)
                check_read_back(info, sha256, size)
            metadata = {**info.metadata, SHA256: sha256, VERIFIED_AT: self.deps.clock().isoformat()}
            await store.set_metadata(self.media_blob, metadata)
        self.info = BlobInfo(info.name, info.size, info.etag, metadata)
        self.archived_here = True
        return facts.but(media=Media.VERIFIED)

    # --- after the copy ------------------------------------------------------------------------------

    async def _record(self, facts: ChunkFacts) -> ChunkFacts:
        """The manifest says archived, and every participant is indexed; the lease is no longer needed."""
        await self.lease_scope.aclose()
        info, job, deps = self.info, self.job, self.deps
        assert info is not None and self.metadata is not None
        finished = deps.clock()
        left = job.seconds_left(finished)
        started = self.started or finished
        await record(
            deps.store,
            job,
            ChunkUpdate(
                ChunkState.ARCHIVED,
                media_blob=self.media_blob,
                metadata_blob=self.meta_blob,
                content_type=self.content_type,
                size=info.size,
                sha256=info.metadata.get(SHA256),
                archived_at=finished,
                seconds_left_at_archive=round(left),
                transfer_seconds=round((finished - started).total_seconds(), 3) if self.result else None,
                resumed_from_byte=self.result.resumed_from if self.result and self.result.resumed_from else None,
            ),
            finished,
        )
        await self._index_participants()
        if self.archived_here:
            elapsed = max((finished - started).total_seconds(), 1e-6)
            BYTES_ARCHIVED.add(info.size)
            CHUNK_DURATION.record(elapsed)
            CHUNK_THROUGHPUT.record(info.size / elapsed / 1e6)
            SECONDS_LEFT.record(left)
            log.info(
                "recording chunk archived: %d bytes to %s, %.1f h before the deadline",
                info.size,
                self.media_blob,
                left / 3600,
                extra={"bytes": info.size, "seconds_left": round(left), "blob": self.media_blob},
            )
        return facts.but(recorded=True)

    async def _index_participants(self) -> None:
        """One small blob per (participant, recording): a prefix listing answers "which recordings"."""
        job = self.job
        assert self.metadata is not None
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
                self.deps.store.create(participant_entry(pid, job.call_id, job.recording_key), entry, JSON)
                for pid in self.metadata.participants
            )
        )

    async def _delete_source(self, facts: ChunkFacts) -> ChunkFacts:
        assert self.job.delete_url is not None
        try:
            with tracer.start_as_current_span("acs.delete", attributes=span_attributes()):
                deleted = await self.deps.acs.delete(self.job.delete_url)
        except AcsAuthError:
            log.error("ACS refused the DELETE of an archived chunk: check the credentials' rights")
            raise
        now = self.deps.clock()
        await record(self.deps.store, self.job, ChunkUpdate(ChunkState.ARCHIVED, source_deleted_at=now), now)
        log.info("deleted from ACS after verification" if deleted else "already gone from ACS (counts as deleted)")
        return facts.but(source=Source.DELETED)

    async def _keep_source(self, facts: ChunkFacts) -> ChunkFacts:
        # Without a size from ACS, a connection closed early looks like the end of the file: the copy cannot be
        # proved whole, so the source stays (ACS removes it at its deadline).
        log.warning("ACS never stated this file's size; leaving it in ACS rather than deleting an unproved copy")
        now = self.deps.clock()
        reason = "ACS did not state the file's size"
        await record(self.deps.store, self.job, ChunkUpdate(ChunkState.ARCHIVED, source_kept_reason=reason), now)
        return facts.but(source=Source.KEPT)

    # --- gone from ACS ---------------------------------------------------------------------------------

    async def _find_copy(self, facts: ChunkFacts) -> ChunkFacts:
        """ACS answered 404: lost, unless another attempt archived (and deleted) it meanwhile."""
        store = self.deps.store
        async for name in store.list_names(f"{self.job.stem}."):
            if not name.endswith(".json") and is_verified(await store.info(name)):
                log.info("ACS no longer has the chunk, and the archive holds its verified copy %s", name)
                return facts.but(copy=Copy.FOUND)
        return facts.but(copy=Copy.NONE)

    async def _record_lost(self, facts: ChunkFacts) -> ChunkFacts:
        job, now, reason = self.job, self.deps.clock(), str(self.gone)
        lost = {
            "job": json.loads(job.model_dump_json()),
            "reason": reason,
            "detectedAt": now.isoformat(),
            "secondsPastDeadline": round(-job.seconds_left(now)),
        }
        await self.deps.store.create(lost_name(job.stem), json.dumps(lost, indent=1).encode(), JSON)
        await record(self.deps.store, job, ChunkUpdate(ChunkState.LOST, lost_at=now, last_error=reason), now)
        log.error(
            "recording chunk lost: ACS no longer has it and it was never archived (%s)",
            reason,
            extra={"outcome": "lost"},
        )
        return facts.but(lost_recorded=True)
