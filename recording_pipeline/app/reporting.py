"""What became of a chunk, once an attempt's outcome is known: metrics, the log lines the dashboard reads, and
outbound events (app.outbound), also for a chunk found already archived, so nothing is lost between its archiving
and the event."""

from __future__ import annotations

import logging
from datetime import datetime

from recording_pipeline.app.chunk_steps import ChunkRun
from recording_pipeline.app.worker_deps import ChunkWorker
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.lifecycle import Outcome
from recording_pipeline.core.naming import manifest_name
from recording_pipeline.core.outbound import OutboundEvent, chunk_archived, chunk_lost, recording_completed
from recording_pipeline.core.state import ChunkState, Manifest, RecordingState
from recording_pipeline.edges.telemetry import EVENT_TO_DELETE

log = logging.getLogger(__name__)


async def report(run: ChunkRun, result: Outcome) -> None:
    """What became of the chunk, once the attempt's outcome is known; no storage request of its own.

    If the events can be neither published nor kept, a delayed copy of the job comes back to publish them (it finds
    the chunk archived, or lost, and reports again); only if that cannot be sent either does the attempt fail.
    """
    job, worker = run.job, run.deps
    now = worker.clock()
    if run.deleted_at is not None:
        latency = (run.deleted_at - job.event_time).total_seconds()
        EVENT_TO_DELETE.record(latency)
        log.info(
            "recording chunk deleted from ACS %.0f s after its event",
            latency,
            extra={"event_to_delete_seconds": round(latency, 3)},
        )
    if run.manifest is not None:
        log_recording_state(run.manifest, now)
    if worker.events is None:
        return
    if run.manifest is None and run.custody is not None:
        # Found archived by another attempt (ACS answered 404): this attempt recorded nothing, so the recording's
        # state comes from the manifest, read for the events only (when the DELETE was, whether it is complete).
        run.manifest = await _read_manifest(job, worker)
    events = events_for(job, run, result, worker.events.archive_url, now)
    try:
        await worker.events.emit(events)
    except Exception as exc:
        log.error("could not publish nor keep outbound events, trying again later: %s: %s", type(exc).__name__, exc)
        await worker.queue.enqueue_later(job, worker.policy.requeue_delay_seconds)


async def _read_manifest(job: RecordingChunk, worker: ChunkWorker) -> Manifest | None:
    try:
        found = await worker.state.read_json(manifest_name(job.call_id, job.recording_key))
    except Exception as exc:  # the ChunkArchived event goes without the DELETE's time
        log.warning("could not read the manifest for the outbound events: %s: %s", type(exc).__name__, exc)
        return None
    return Manifest.from_json(found[0]) if found is not None else None


def events_for(
    job: RecordingChunk, run: ChunkRun, result: Outcome, archive_url: str, now: datetime
) -> list[OutboundEvent]:
    events: list[OutboundEvent] = []
    if result in (Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED) and run.custody is not None:
        entry = run.manifest.chunk(job.chunk_index) if run.manifest else None
        deleted_at = run.deleted_at or (entry.source_deleted_at if entry else None)
        events.append(chunk_archived(job, run.custody, archive_url, deleted_at))
    if run.manifest is not None and run.manifest.state is RecordingState.COMPLETE:
        events.append(recording_completed(run.manifest, archive_url))
    if result is Outcome.LOST:
        events.append(chunk_lost(job, str(run.gone), now, archive_url))
    return events


def log_recording_state(manifest: Manifest, now: datetime) -> None:
    """One line per recorded chunk: the dashboard's view of recordings still incomplete, nearest their deadline."""
    total = manifest.total_chunks
    archived = manifest.count(ChunkState.ARCHIVED)
    expires = manifest.expires_at
    log.info(
        "recording state: %s, %d of %s chunks archived",
        manifest.state.value,
        archived,
        total if total is not None else "?",
        extra={
            "recording_key": manifest.recording_key,
            "recording_state": manifest.state.value,
            "chunks_archived": archived,
            "chunks_total": total if total is not None else -1,
            "expires_at": expires.isoformat() if expires else "",
            "seconds_to_deadline": round((expires - now).total_seconds()) if expires else -1,
        },
    )
