"""The steps of core.lifecycle, performed: each does its I/O and reports what it observed.

One ChunkRun per attempt holds what the steps learn on the way (the metadata
document, the media blob's name and properties, the transfer's result). The
order of steps is not decided here: ``archive_chunk`` asks ``next_step``.

Everything written to the archive is created once and never changed: the
metadata document, the media (one Put Block List with its metadata and index
tag), the chain-of-custody record, the participant index, the source-deleted
and lost records. What changes — the recording's manifest, the lock — lives in
the state store.

No request is sent whose answer the attempt already knows. Creating the
metadata document claims the chunk: nothing else of it can exist yet, so the
claimer neither looks for media or staged blocks nor reads the block list back
after its own commit, and takes the lease only if its copy is still running
halfway through the claim's window (most copies are done long before). A chunk
of one block is created whole by one Put Blob. A first delivery asks ACS for
the metadata before the archive, which almost never has it yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from recording_pipeline import __version__
from recording_pipeline.app.manifests import ManifestWriter
from recording_pipeline.app.transfer import TransferResult, WholePut, commit_blocks, copy_to_blocks
from recording_pipeline.core.attempts import AttemptProgress
from recording_pipeline.core.custody import (
    ArchivedBlock,
    ChunkIdentity,
    CustodyRecord,
    DeclaredSource,
    SourceAnswer,
    SourceDeletedRecord,
    Verification,
)
from recording_pipeline.core.errors import (
    AcsAuthError,
    ArchiveIntegrityError,
    RecordingGoneError,
)
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.lifecycle import ChunkFacts, Claim, Copy, Lease, Media, Metadata, Source, Step
from recording_pipeline.core.metadata import ChunkMetadata, parse_metadata
from recording_pipeline.core.naming import (
    custody_name,
    lock_name,
    lost_name,
    manifest_name,
    media_format,
    media_name,
    metadata_name,
    participant_entry,
    source_deleted_name,
)
from recording_pipeline.core.ports import (
    ArchiveStore,
    BlobInfo,
    ChunkQueue,
    RecordingSource,
    StagedBlock,
    StateStore,
)
from recording_pipeline.core.state import ChunkState, ChunkUpdate, Manifest
from recording_pipeline.core.urls import source_url
from recording_pipeline.core.verification import (
    SHA256,
    SINGLE_PUT,
    SOURCE_SIZE,
    SOURCE_SIZE_DECLARED,
    check_committed,
    check_read_back,
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
MEDIA_TAGS = {"kind": "media"}  # the lifecycle rule tiers blobs with this tag, and only them
LEASE_SECONDS = 15  # the shortest the service allows: a dead worker's lease frees up soon
# A lease nobody renews expires within LEASE_SECONDS (a crashed worker, whose message is very likely the one being
# processed now), so only one held throughout this long proves a live worker, whose own queue message is in flight.
LEASE_WAIT_SECONDS = 2 * LEASE_SECONDS + 5
# Another attempt's claim younger than this may be a copy of one block in progress, without a lease: a duplicate
# leaves it to the claimer and checks again later. Older, the claimer has finished, taken the lease, or died.
CLAIM_SECONDS = 60
LEASE_AFTER_SECONDS = CLAIM_SECONDS / 2  # a claimed copy still running after this takes the lease
CLAIMED_BY = "claimed_by"  # the metadata document's: the queue message whose attempt created it


class KnownBlobs:
    """Names of write-once blobs this process knows exist (it created them, or was told they existed): they
    cannot disappear, so they need not be created again. Bounded: the oldest are forgotten first."""

    def __init__(self, limit: int = 16384) -> None:
        self._names: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def add(self, name: str) -> None:
        self._names[name] = None
        self._names.move_to_end(name)
        while len(self._names) > self._limit:
            self._names.popitem(last=False)


@dataclass
class ChunkDeps:
    """What the steps need; built once per process."""

    acs: RecordingSource
    store: ArchiveStore
    state: StateStore
    queue: ChunkQueue
    block_size: int
    concurrency: int
    requeue_delay_seconds: int
    clock: Callable[[], datetime]
    manifests: ManifestWriter
    index_entries: KnownBlobs = field(default_factory=KnownBlobs)


@dataclass
class ChunkRun:
    """One attempt at one chunk: what its steps have learned so far."""

    job: RecordingChunk
    deps: ChunkDeps
    progress: AttemptProgress = field(default_factory=AttemptProgress)
    first_delivery: bool = False  # the message's first delivery, never requeued: the archive is almost surely empty
    message_id: str | None = None  # the queue message's id: the claim names it
    metadata: ChunkMetadata | None = None
    media_blob: str = ""
    content_type: str = ""
    info: BlobInfo | None = None
    result: TransferResult | None = None
    custody: CustodyRecord | None = None
    archived_here: bool = False
    committed_here: bool = False
    started: datetime | None = None
    finished: datetime | None = None
    deleted_at: datetime | None = None
    source_deleted: SourceDeletedRecord | None = None  # written with the state, once ACS has answered the DELETE
    gone: RecordingGoneError | None = None
    manifest: Manifest | None = None  # as the RECORD step left it: the worker reports what it says
    lease_scope: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def meta_blob(self) -> str:
        return metadata_name(self.job.stem)

    async def perform(self, step: Step, facts: ChunkFacts) -> ChunkFacts:
        handler: Callable[[ChunkFacts], Awaitable[ChunkFacts]] = getattr(self, "_" + step.value.replace("-", "_"))
        return await handler(facts)

    # --- the copy ----------------------------------------------------------------------------------

    async def _fetch_metadata(self, facts: ChunkFacts) -> ChunkFacts:
        """The metadata document, archived once; the attempt that creates it claims the chunk."""
        store, job = self.deps.store, self.job
        if not self.first_delivery:
            archived = await store.read_blob(self.meta_blob)
            if archived is not None:
                return self._knows(parse_metadata(archived[0]), facts).but(claim=self._claim_of(archived[1]))
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
            {
                SHA256: metadata.sha256,
                SOURCE_SIZE: str(len(body)),
                "document_id": job.document_id,
                **({CLAIMED_BY: self.message_id} if self.message_id else {}),
            },
        )
        if created:  # the first to reach the chunk: no blob, block or record of it can exist yet
            return self._knows(metadata, facts).but(claim=Claim.MINE, media=Media.ABSENT)
        # Another attempt wrote it first: what it wrote must be what ACS serves now.
        stored = await store.read_blob(self.meta_blob)
        if stored is None or parse_metadata(stored[0]).sha256 != metadata.sha256:
            raise ArchiveIntegrityError(f"{self.meta_blob}: archived metadata differs from what ACS served")
        return self._knows(metadata, facts).but(claim=self._claim_of(stored[1]))

    def _claim_of(self, document: BlobInfo) -> Claim:
        if self.message_id and document.metadata.get(CLAIMED_BY) == self.message_id:
            return Claim.STALE  # an earlier delivery of this very message claimed it, and that delivery has ended
        if document.created is None:
            return Claim.STALE  # no age to go by: do not wait for a claimer that may not exist
        age = (self.deps.clock() - document.created).total_seconds()
        return Claim.FRESH if age < CLAIM_SECONDS else Claim.STALE

    def _knows(self, metadata: ChunkMetadata, facts: ChunkFacts) -> ChunkFacts:
        self.metadata = metadata
        extension, self.content_type = media_format(metadata.format, self.job.format_hint)
        self.media_blob = media_name(self.job.stem, extension)
        return facts.but(metadata=Metadata.KNOWN)

    async def _look_up_media(self, facts: ChunkFacts) -> ChunkFacts:
        """Verified if its custody record exists; else committed if the blob exists; else absent."""
        self.custody = await self._read_custody()
        if self.custody is not None:
            return facts.but(media=Media.VERIFIED, source=self._source_given(facts.source, self.custody))
        self.info = await self.deps.store.info(self.media_blob)
        if self.info is None:
            return facts.but(media=Media.ABSENT)
        return facts.but(media=Media.COMMITTED)

    async def _read_custody(self) -> CustodyRecord | None:
        found = await self.deps.store.read_bytes(custody_name(self.job.stem))
        if found is None:
            return None
        try:
            return CustodyRecord.model_validate_json(found[0])
        except ValidationError:
            raise ArchiveIntegrityError(f"{custody_name(self.job.stem)} is not a chain-of-custody record") from None

    @staticmethod
    def _source_given(source: Source, custody: CustodyRecord) -> Source:
        return Source.UNPROVABLE if source is Source.PRESENT and not custody.source_proved_whole else source

    async def _lease(self, facts: ChunkFacts) -> ChunkFacts:
        """Hold the chunk while it is copied; the lease saves work, it does not make the copy correct."""
        if not await self._take_lease():
            return facts.but(lease=Lease.ELSEWHERE)
        return facts.but(lease=Lease.HELD, media=Media.UNKNOWN)  # look again: the holder may have finished

    async def _take_lease(self) -> bool:
        """The chunk's lease, held (and renewed) until ``lease_scope`` closes; False if another kept it."""
        return await self.lease_scope.enter_async_context(
            self.deps.state.lease(lock_name(self.job.stem), LEASE_SECONDS, LEASE_WAIT_SECONDS)
        )

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
        claimed = facts.claim is Claim.MINE

        async def lease_if_long() -> None:
            """Under the claim, a copy that is still running halfway through the claim's window takes the lease,
            so duplicates keep leaving it to this worker once the claim looks stale; a quick copy never needs one.
            If another worker holds it (storage refusing renewals), both copy and converge on one blob."""
            await asyncio.sleep(LEASE_AFTER_SECONDS)
            if not await self._take_lease():
                log.warning("another worker holds the lease of a chunk this one claimed; both copy, one blob stays")

        async def create_whole(size: int, sha256: str | None, put: WholePut) -> bool:
            """A file of one request: the blob is created whole, with what proves it, in one Put Blob."""
            metadata = self._media_metadata(size, True, sha256, single_put=True)
            with tracer.start_as_current_span("archive.commit", attributes=span_attributes()):
                created = await put(self.content_type, metadata, MEDIA_TAGS)
            if created:
                self.info = BlobInfo(self.media_blob, size, "", metadata)  # as created
                self.committed_here = True
            return created

        lease_later = asyncio.create_task(lease_if_long()) if claimed and facts.lease is Lease.NOT_TRIED else None
        try:
            # Download and block upload overlap, so they share one span.
            with tracer.start_as_current_span("transfer", attributes=span_attributes()) as span:
                result = self.result = await copy_to_blocks(
                    deps.acs,
                    deps.store,
                    self.job.content_url,
                    self.media_blob,
                    deps.block_size,
                    deps.concurrency,
                    progress=self.progress,
                    fresh=claimed,
                    create_whole=create_whole,
                )
                span.set_attributes({"recording.bytes": result.size, "recording.resumed_from": result.resumed_from})
        except RecordingGoneError as exc:
            self.gone = exc
            return facts.but(source=Source.GONE)
        finally:
            if lease_later is not None:  # a quick copy never took it; a failure to take it costs only efficiency
                lease_later.cancel()
                await asyncio.gather(lease_later, return_exceptions=True)
        self.finished = deps.clock()
        if result.created_whole is not None:  # one Put Blob: copied and committed (by us, or found there)
            if not result.created_whole:
                self.info = await deps.store.info(self.media_blob)
                if self.info is None:
                    raise ArchiveIntegrityError(f"{self.media_blob}: not found after it already existed")
            return facts.but(copied=True, media=Media.COMMITTED)
        return facts.but(copied=True)

    def _media_metadata(self, size: int, size_declared: bool, sha256: str | None, single_put: bool) -> dict[str, str]:
        """What proves the media whole, known when it is committed, in the same request."""
        job = self.job
        metadata = {
            SOURCE_SIZE_DECLARED: "true" if size_declared else "false",
            SOURCE_SIZE: str(size),
            "call_id": job.call_id,
            "recording_key": job.recording_key,
            "chunk_index": str(job.chunk_index),
            "document_id": job.document_id,
        }
        if sha256:
            metadata[SHA256] = sha256
        if single_put:
            metadata[SINGLE_PUT] = "true"
        return metadata

    async def _commit(self, facts: ChunkFacts) -> ChunkFacts:
        """One Put Block List, only if the blob is absent, carrying everything known to prove it at commit time."""
        assert self.result is not None
        result = self.result
        metadata = self._media_metadata(result.size, result.size_declared, result.sha256, single_put=False)
        store = self.deps.store
        with tracer.start_as_current_span("archive.commit", attributes=span_attributes()):
            if await commit_blocks(store, self.media_blob, result, self.content_type, metadata, MEDIA_TAGS):
                self.info = BlobInfo(self.media_blob, result.size, "", metadata)  # what we committed, as committed
                self.committed_here = True
            else:  # another attempt committed it first: look at what it wrote
                self.info = await store.info(self.media_blob)
        if self.info is None:
            raise ArchiveIntegrityError(f"{self.media_blob}: not found after commit")
        return facts.but(media=Media.COMMITTED)

    async def _verify(self, facts: ChunkFacts) -> ChunkFacts:
        """Prove the committed blob is the file ACS served, and write that proof once: the custody record."""
        store, info, result, job = self.deps.store, self.info, self.result, self.job
        assert info is not None and self.metadata is not None
        with tracer.start_as_current_span("archive.verify", attributes=span_attributes()):
            committed: list[StagedBlock] = (
                # Our own Put Block List succeeded on an absent blob: the blob is exactly these blocks.
                result.blocks if self.committed_here and result else await store.committed_blocks(self.media_blob)
            )
            check_committed(info, committed, result.block_ids if result else None)
            # A streamed Put Blob's headers precede its body: its sha256 is only in what this attempt streamed.
            sha256 = info.metadata.get(SHA256) or (result.sha256 if self.committed_here and result else None)
            method = Verification.WHILE_STAGING
            if not sha256 or result is None:
                # Resumed (or committed by another attempt): hash what is archived.
                sha256, size = await store.sha256(self.media_blob)
                check_read_back(info, sha256, size)
                method = Verification.READ_BACK
            declared = result.declared if result else {}
            record = CustodyRecord(
                chunk=ChunkIdentity.of(job),
                source=DeclaredSource(
                    url=source_url(job.content_url),
                    content_length=int(info.metadata[SOURCE_SIZE])
                    if info.metadata.get(SOURCE_SIZE_DECLARED) != "false"
                    else None,
                    content_type=declared.get("Content-Type"),
                    etag=declared.get("ETag"),
                    last_modified=declared.get("Last-Modified"),
                ),
                received_from=self.started if result else None,
                received_until=self.finished if result else None,
                resumed_from_byte=result.resumed_from if result else 0,
                media_blob=self.media_blob,
                content_type=self.content_type,
                size=info.size,
                sha256=sha256,
                blocks=[ArchivedBlock(id=b.block_id, size=b.size) for b in committed],
                metadata_blob=self.meta_blob,
                metadata_sha256=self.metadata.sha256,
                verification=method,
                verified_at=self.deps.clock(),
                app_version=__version__,
            )
            if not await store.create(custody_name(job.stem), record.to_json(), JSON):
                record = await self._read_custody() or record  # another attempt proved it first
        self.custody = record
        self.archived_here = True
        # Whether ACS's copy may go follows from the proof kept, whoever wrote it: its size was stated and matched.
        return facts.but(media=Media.VERIFIED, source=self._source_given(facts.source, record))

    # --- after the copy ------------------------------------------------------------------------------

    async def _index(self, facts: ChunkFacts) -> ChunkFacts:
        """One small blob per (participant, recording): a prefix listing answers "which recordings"."""
        await self.lease_scope.aclose()  # the copy is proved: nothing left to guard
        job = self.job
        assert self.metadata is not None  # FETCH_METADATA comes first in every attempt
        entry = json.dumps(
            {
                "callId": job.call_id,
                "recordingId": job.recording_id,
                "recordingKey": job.recording_key,
                "recordingStartTime": job.recording_start_time.isoformat() if job.recording_start_time else None,
                "manifest": manifest_name(job.call_id, job.recording_key),
            }
        ).encode()
        participants = self.metadata.participants
        known = self.deps.index_entries
        # The other chunks of a recording mostly name the same participants: an entry this process already
        # wrote (or found) is there for good.
        names = [
            name
            for name in dict.fromkeys(participant_entry(pid, job.call_id, job.recording_key) for pid in participants)
            if name not in known
        ]
        await asyncio.gather(*(self.deps.store.create(name, entry, JSON) for name in names))
        for name in names:
            known.add(name)
        return facts.but(indexed=True)

    async def _delete_source(self, facts: ChunkFacts) -> ChunkFacts:
        """ACS's copy goes only now: the custody record exists. The record of the DELETE is written, once, with
        the recording's state (RECORD), in parallel; an attempt that dies before that repeats the DELETE (404)."""
        assert self.job.delete_url is not None and self.custody is not None
        try:
            with tracer.start_as_current_span("acs.delete", attributes=span_attributes()):
                deleted = await self.deps.acs.delete(self.job.delete_url)
        except AcsAuthError:
            log.error("ACS refused the DELETE of an archived chunk: check the credentials' rights")
            raise
        self.deleted_at = self.deps.clock()
        self.source_deleted = SourceDeletedRecord(
            chunk=self.custody.chunk,
            delete_url=source_url(self.job.delete_url),
            answer=SourceAnswer.DELETED if deleted else SourceAnswer.ALREADY_GONE,
            deleted_at=self.deleted_at,
            app_version=__version__,
        )
        log.info("deleted from ACS after verification" if deleted else "already gone from ACS (counts as deleted)")
        return facts.but(source=Source.DELETED)

    async def _record(self, facts: ChunkFacts) -> ChunkFacts:
        """One write of the recording's state: archived, and what became of ACS's copy."""
        custody, job, deps = self.custody, self.job, self.deps
        assert custody is not None
        now = deps.clock()
        left = job.seconds_left(now)
        kept = facts.source is Source.UNPROVABLE
        if kept:
            # Without a size from ACS, a connection closed early looks like the end of the file: the copy cannot
            # be proved whole, so the source stays (ACS removes it at its deadline).
            log.warning("ACS never stated this file's size; leaving it in ACS rather than deleting an unproved copy")
        evidence = self.source_deleted
        if evidence is not None:  # written beside the state, not before it: one round trip instead of two
            written = deps.store.create(source_deleted_name(job.stem), evidence.to_json(), JSON)
        state = deps.manifests.record(
            job,
            custody.archived_update(self.deleted_at, kept),
            now,
            new_recording=facts.claim is Claim.MINE and job.chunk_index == 0,
        )
        if evidence is not None:
            _, self.manifest = await asyncio.gather(written, state)
        else:
            self.manifest = await state
        if self.archived_here:
            BYTES_ARCHIVED.add(custody.size)
            if self.started and self.finished:
                elapsed = max((self.finished - self.started).total_seconds(), 1e-6)
                CHUNK_DURATION.record(elapsed)
                CHUNK_THROUGHPUT.record(custody.size / elapsed / 1e6)
            SECONDS_LEFT.record(left)
            log.info(
                "recording chunk archived: %d bytes to %s, %.1f h before the deadline",
                custody.size,
                custody.media_blob,
                left / 3600,
                extra={"bytes": custody.size, "seconds_left": round(left), "blob": custody.media_blob},
            )
        return facts.but(recorded=True)

    # --- gone from ACS ---------------------------------------------------------------------------------

    async def _find_copy(self, facts: ChunkFacts) -> ChunkFacts:
        """ACS answered 404: lost, unless another attempt archived (and deleted) it meanwhile."""
        self.custody = await self._read_custody()
        if self.custody is not None:  # kept: what the worker reports of the chunk (outbound events)
            log.info("ACS no longer has the chunk, and the archive holds its proved copy")
            return facts.but(copy=Copy.FOUND)
        return facts.but(copy=Copy.NONE)

    async def _record_lost(self, facts: ChunkFacts) -> ChunkFacts:
        job, now, reason = self.job, self.deps.clock(), str(self.gone)
        lost = {
            "job": json.loads(job.model_dump_json()),
            "reason": reason,
            "detectedAt": now.isoformat(),
            "secondsPastDeadline": round(-job.seconds_left(now)),
            "appVersion": __version__,
        }
        await self.deps.store.create(lost_name(job.stem), json.dumps(lost, indent=1).encode(), JSON)
        await self.deps.manifests.record(job, ChunkUpdate(ChunkState.LOST, lost_at=now, last_error=reason), now)
        log.error(
            "recording chunk lost: ACS no longer has it and it was never archived (%s)",
            reason,
            extra={"outcome": "lost"},
        )
        return facts.but(lost_recorded=True)
