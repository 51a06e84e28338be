"""The steps after the proof: the participant index, the DELETE of ACS's copy, the recording's state.

Each runs only once the chunk's custody record exists (core.lifecycle), whoever
wrote it; each is idempotent, so an attempt that dies between them is finished
by the next.
"""

from __future__ import annotations

import asyncio
import logging

from recording_pipeline import __version__
from recording_pipeline.app.chunk_steps import JSON, ChunkRun
from recording_pipeline.app.recording_index import entry_body
from recording_pipeline.core.custody import SourceAnswer, SourceDeletedRecord
from recording_pipeline.core.errors import AcsAuthError
from recording_pipeline.core.lifecycle import ChunkFacts, Claim, Source
from recording_pipeline.core.naming import participant_entry, source_deleted_name
from recording_pipeline.core.urls import source_url
from recording_pipeline.edges.telemetry import (
    BYTES_ARCHIVED,
    CHUNK_DURATION,
    CHUNK_THROUGHPUT,
    SECONDS_LEFT,
    span_attributes,
    tracer,
)

log = logging.getLogger(__name__)


async def index(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """One small blob per (participant, recording): a prefix listing answers "which recordings". (The day index
    is filed with the recording's manifest: app.manifests.)"""
    await run.lease_scope.aclose()  # the copy is proved: nothing left to guard
    job = run.job
    assert run.metadata is not None  # FETCH_METADATA comes first in every attempt
    entry = entry_body(job.call_id, job.recording_id, job.recording_key, job.recording_start_time)
    participants = run.metadata.participants
    known = run.deps.index_entries
    # The other chunks of a recording mostly name the same participants: an entry this process already
    # wrote (or found) is there for good.
    names = [
        name
        for name in dict.fromkeys(participant_entry(pid, job.call_id, job.recording_key) for pid in participants)
        if name not in known
    ]
    await asyncio.gather(*(run.deps.archive.create(name, entry, JSON) for name in names))
    for name in names:
        known.add(name)
    return facts.replace(indexed=True)


async def delete_source(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """ACS's copy goes only now: the custody record exists. The record of the DELETE is written, once, with
    the recording's state (RECORD), in parallel; an attempt that dies before that repeats the DELETE (404)."""
    assert run.job.delete_url is not None and run.custody is not None
    try:
        with tracer.start_as_current_span("acs.delete", attributes=span_attributes()):
            deleted = await run.deps.acs.delete(run.job.delete_url)
    except AcsAuthError:
        log.error("ACS refused the DELETE of an archived chunk: check the credentials' rights")
        raise
    run.deleted_at = run.deps.clock()
    run.source_deleted = SourceDeletedRecord(
        chunk=run.custody.chunk,
        delete_url=source_url(run.job.delete_url),
        answer=SourceAnswer.DELETED if deleted else SourceAnswer.ALREADY_GONE,
        deleted_at=run.deleted_at,
        app_version=__version__,
    )
    log.info("deleted from ACS after verification" if deleted else "already gone from ACS (counts as deleted)")
    return facts.replace(source=Source.DELETED)


async def record(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """One write of the recording's state: archived, and what became of ACS's copy."""
    custody, job, deps = run.custody, run.job, run.deps
    assert custody is not None
    now = deps.clock()
    left = job.seconds_left(now)
    kept = facts.source is Source.UNPROVABLE
    if kept:
        # Without a size from ACS, a connection closed early looks like the end of the file: the copy cannot
        # be proved whole, so the source stays (ACS removes it at its deadline).
        log.warning("ACS never stated this file's size; leaving it in ACS rather than deleting an unproved copy")
    evidence = run.source_deleted
    if evidence is not None:  # written beside the state, not before it: one round trip instead of two
        written = deps.archive.create(source_deleted_name(job.stem), evidence.to_json(), JSON)
    state = deps.manifests.record(
        job,
        custody.archived_update(run.deleted_at, kept),
        now,
        new_recording=facts.claim is Claim.MINE and job.chunk_index == 0,
    )
    if evidence is not None:
        _, run.manifest = await asyncio.gather(written, state)
    else:
        run.manifest = await state
    if run.archived_here:
        BYTES_ARCHIVED.add(custody.size)
        if run.started and run.finished:
            elapsed = max((run.finished - run.started).total_seconds(), 1e-6)
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
    return facts.replace(recorded=True)
