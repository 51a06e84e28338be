"""The steps up to the proof: the metadata document, the media blob, the lease, the copy, the commit, the custody
record. Each does its I/O and reports what it observed as new facts.

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
import hashlib
import logging
from functools import partial

from recording_pipeline import __version__
from recording_pipeline.app.chunk_steps import CLAIM_SECONDS, JSON, ChunkRun
from recording_pipeline.app.transfer import TransferResult, WholePut, commit_blocks, copy_to_blocks
from recording_pipeline.core.custody import CustodyRecord, Verification, custody_record
from recording_pipeline.core.errors import AcsTransientError, ArchiveIntegrityError, RecordingGoneError
from recording_pipeline.core.lifecycle import ChunkFacts, Claim, Lease, Media, Metadata, Source
from recording_pipeline.core.metadata import ChunkMetadata, parse_metadata
from recording_pipeline.core.naming import custody_name, media_format, media_name
from recording_pipeline.core.ports import BlobInfo, StagedBlock
from recording_pipeline.core.verification import (
    SHA256,
    SINGLE_PUT,
    SOURCE_SIZE,
    SOURCE_SIZE_DECLARED,
    check_committed,
    check_read_back,
)
from recording_pipeline.edges.telemetry import span_attributes, tracer

log = logging.getLogger(__name__)

MEDIA_TAGS = {"kind": "media"}  # the lifecycle rule tiers blobs with this tag, and only them
CLAIMED_BY = "claimed_by"  # the metadata document's: the queue message whose attempt created it


# --- the metadata document: who claimed the chunk ----------------------------------------------------


async def fetch_metadata(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """The metadata document, archived once; the attempt that creates it claims the chunk."""
    archive, job = run.deps.archive, run.job
    if not run.first_delivery:
        archived = await archive.read_blob(run.meta_blob)
        if archived is not None:
            return _note_metadata(run, parse_metadata(archived[0]), facts).replace(claim=_claim_of(run, archived[1]))
    try:
        with tracer.start_as_current_span("acs.download_metadata", attributes=span_attributes()):
            body = await run.deps.acs.fetch_metadata(job.metadata_url)
    except RecordingGoneError as exc:
        run.gone = exc
        return facts.replace(source=Source.GONE)
    metadata = parse_metadata(body, job.document_id)
    created = await archive.create(
        run.meta_blob,
        body,
        JSON,
        {
            SHA256: metadata.sha256,
            SOURCE_SIZE: str(len(body)),
            "document_id": job.document_id,
            **({CLAIMED_BY: run.message_id} if run.message_id else {}),
        },
    )
    if created:  # the first to reach the chunk: no blob, block or record of it can exist yet
        return _note_metadata(run, metadata, facts).replace(claim=Claim.MINE, media=Media.ABSENT)
    # Another attempt wrote it first: what it wrote must be what ACS serves now.
    stored = await archive.read_blob(run.meta_blob)
    if stored is None or parse_metadata(stored[0]).sha256 != metadata.sha256:
        raise ArchiveIntegrityError(f"{run.meta_blob}: archived metadata differs from what ACS served")
    return _note_metadata(run, metadata, facts).replace(claim=_claim_of(run, stored[1]))


def _claim_of(run: ChunkRun, document: BlobInfo) -> Claim:
    if run.message_id and document.metadata.get(CLAIMED_BY) == run.message_id:
        return Claim.STALE  # an earlier delivery of this very message claimed it, and that delivery has ended
    if document.created is None:
        return Claim.STALE  # no age to go by: do not wait for a claimer that may not exist
    age = (run.deps.clock() - document.created).total_seconds()
    return Claim.FRESH if age < CLAIM_SECONDS else Claim.STALE


def _note_metadata(run: ChunkRun, metadata: ChunkMetadata, facts: ChunkFacts) -> ChunkFacts:
    run.metadata = metadata
    extension, run.content_type = media_format(metadata.format, run.job.format_hint)
    run.media_blob = media_name(run.job.stem, extension)
    return facts.replace(metadata=Metadata.KNOWN)


# --- the media blob, and who may copy it -------------------------------------------------------------


async def look_up_media(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """Verified if its custody record exists; else committed if the blob exists; else absent."""
    run.custody = await run.read_custody()
    if run.custody is not None:
        return facts.replace(media=Media.VERIFIED, source=_source_given(facts.source, run.custody))
    run.info = await run.deps.archive.info(run.media_blob)
    if run.info is None:
        return facts.replace(media=Media.ABSENT)
    return facts.replace(media=Media.COMMITTED)


def _source_given(source: Source, custody: CustodyRecord) -> Source:
    return Source.UNPROVABLE if source is Source.PRESENT and not custody.source_proved_whole else source


async def lease(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """Hold the chunk while it is copied; the lease saves work, it does not make the copy correct."""
    if not await run.take_lease():
        return facts.replace(lease=Lease.ELSEWHERE)
    return facts.replace(lease=Lease.HELD, media=Media.UNKNOWN)  # look again: the holder may have finished


async def leave_to_holder(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    # That worker's message will be retried if it dies; but if it *is* this message (its invisibility
    # lapsed), deleting ours would leave none. A delayed copy closes that gap: it finds the chunk archived
    # and only repeats the idempotent DELETE.
    await run.deps.queue.enqueue_later(run.job, run.deps.policy.requeue_delay_seconds)
    log.info("a live worker holds this chunk; leaving it to that worker, checking again later")
    return facts.replace(left_to_holder=True)


# --- the copy, the commit ----------------------------------------------------------------------------


async def copy(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """Stream the media into staged blocks (resuming), or one Put Blob for a file of one block."""
    run.started = run.deps.clock()
    claimed = facts.claim is Claim.MINE
    lease_later = asyncio.create_task(run.lease_if_long()) if claimed and facts.lease is Lease.NOT_TRIED else None
    try:
        result = run.result = await _transfer(run, fresh=claimed)
    except RecordingGoneError as exc:
        run.gone = exc
        return facts.replace(source=Source.GONE)
    finally:
        if lease_later is not None:  # a quick copy never took it; a failure to take it costs only efficiency
            lease_later.cancel()
            await asyncio.gather(lease_later, return_exceptions=True)
    run.finished = run.deps.clock()
    if result.created_whole is None:
        return facts.replace(copied=True)
    # One Put Blob: copied and committed (by us, or found there).
    if not result.created_whole:
        run.info = await run.deps.archive.info(run.media_blob)
        if run.info is None:
            raise ArchiveIntegrityError(f"{run.media_blob}: not found after it already existed")
    return facts.replace(copied=True, media=Media.COMMITTED)


async def _transfer(run: ChunkRun, fresh: bool) -> TransferResult:
    deps = run.deps
    # Download and block upload overlap, so they share one span.
    with tracer.start_as_current_span("transfer", attributes=span_attributes()) as span:
        result = await copy_to_blocks(
            deps.acs,
            deps.archive,
            run.job.content_url,
            run.media_blob,
            deps.block_size,
            deps.concurrency,
            progress=run.progress,
            fresh=fresh,
            create_whole=partial(_create_whole, run),
        )
        span.set_attributes({"recording.bytes": result.size, "recording.resumed_from": result.resumed_from})
    return result


async def _create_whole(run: ChunkRun, size: int, sha256: str | None, put: WholePut) -> bool:
    """A file of one request: the blob is created whole, with what proves it, in one Put Blob."""
    metadata = _media_metadata(run, size, True, sha256, single_put=True)
    with tracer.start_as_current_span("archive.commit", attributes=span_attributes()):
        created = await put(run.content_type, metadata, MEDIA_TAGS)
    if created:
        run.info = BlobInfo(run.media_blob, size, "", metadata)  # as created
        run.committed_here = True
    return created


def _media_metadata(
    run: ChunkRun, size: int, size_declared: bool, sha256: str | None, single_put: bool
) -> dict[str, str]:
    """What proves the media whole, known when it is committed, in the same request."""
    job = run.job
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


async def commit(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """One Put Block List, only if the blob is absent, carrying everything known to prove it at commit time."""
    assert run.result is not None
    result = run.result
    metadata = _media_metadata(run, result.size, result.size_declared, result.sha256, single_put=False)
    archive = run.deps.archive
    with tracer.start_as_current_span("archive.commit", attributes=span_attributes()):
        if await commit_blocks(archive, run.media_blob, result, run.content_type, metadata, MEDIA_TAGS):
            run.info = BlobInfo(run.media_blob, result.size, "", metadata)  # what we committed, as committed
            run.committed_here = True
        else:  # another attempt committed it first: look at what it wrote
            run.info = await archive.info(run.media_blob)
    if run.info is None:
        raise ArchiveIntegrityError(f"{run.media_blob}: not found after commit")
    return facts.replace(media=Media.COMMITTED)


# --- the proof ---------------------------------------------------------------------------------------


async def _compare_with_source(run: ChunkRun, sha256: str, size: int) -> Verification:
    """A streamed Put Blob this attempt did not create carries no hash of what was streamed (its headers went
    before its body), and the attempt that created it may have died, or refused it, before comparing the
    service's MD5 with its own. ACS still has the file (nothing is deleted before the custody record): what it
    serves must hash as the archive does, or the blob is not proved and ACS's copy stays."""
    acs = run.deps.acs

    async def download() -> tuple[str, int]:
        hasher, received = hashlib.sha256(), 0
        async with acs.open_media(run.job.content_url, 0) as stream:
            if stream.start != 0:
                raise AcsTransientError(f"asked for the whole file, got it from byte {stream.start}")
            async for piece in stream.pieces():
                await asyncio.to_thread(hasher.update, piece)
                received += len(piece)
        return hasher.hexdigest(), received

    try:
        served = await acs.retry.call(f"download {run.media_blob} to compare", download)
    except RecordingGoneError:
        log.warning("%s: ACS no longer has the file to compare with; proved by reading it back", run.media_blob)
        return Verification.READ_BACK_SOURCE_GONE
    if served != (sha256, size):
        raise ArchiveIntegrityError(f"{run.media_blob}: the archived blob differs from the file ACS serves")
    return Verification.READ_BACK_AND_SOURCE


async def verify(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """Prove the committed blob is the file ACS served, and write that proof once: the custody record."""
    archive, info, result, job = run.deps.archive, run.info, run.result, run.job
    assert info is not None and run.metadata is not None
    with tracer.start_as_current_span("archive.verify", attributes=span_attributes()):
        committed: list[StagedBlock] = (
            # Our own Put Block List succeeded on an absent blob: the blob is exactly these blocks.
            result.blocks if run.committed_here and result else await archive.committed_blocks(run.media_blob)
        )
        check_committed(info, committed, result.block_ids if result else None)
        # A streamed Put Blob's headers precede its body: its sha256 is only in what this attempt streamed.
        sha256 = info.metadata.get(SHA256) or (result.sha256 if run.committed_here and result else None)
        method = Verification.WHILE_STAGING
        if not sha256 or result is None:
            # Resumed (or committed by another attempt): hash what is archived.
            sha256, size = await archive.sha256(run.media_blob)
            check_read_back(info, sha256, size)
            method = Verification.READ_BACK
            if info.metadata.get(SINGLE_PUT) == "true" and not info.metadata.get(SHA256):
                method = await _compare_with_source(run, sha256, size)
        record = custody_record(
            job,
            content_length=int(info.metadata[SOURCE_SIZE])
            if info.metadata.get(SOURCE_SIZE_DECLARED) != "false"
            else None,
            declared=result.declared if result else {},
            received_from=run.started if result else None,
            received_until=run.finished if result else None,
            resumed_from_byte=result.resumed_from if result else 0,
            media_blob=run.media_blob,
            content_type=run.content_type,
            size=info.size,
            sha256=sha256,
            blocks=committed,
            metadata_blob=run.meta_blob,
            metadata_sha256=run.metadata.sha256,
            verification=method,
            verified_at=run.deps.clock(),
            app_version=__version__,
        )
        if not await archive.create(custody_name(job.stem), record.to_json(), JSON):
            record = await run.read_custody() or record  # another attempt proved it first
    run.custody = record
    run.archived_here = True
    # Whether ACS's copy may go follows from the proof kept, whoever wrote it: its size was stated and matched.
    return facts.replace(media=Media.VERIFIED, source=_source_given(facts.source, record))
