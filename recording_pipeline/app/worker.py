"""The chunk worker: one queue message in, one attempt at the chunk, one decision about the message.

``handle_chunk_message`` runs an attempt and, if it fails, acts on what
core.attempts decides: let the host deliver the message again, continue or try
again later with a fresh message, or quarantine the job. ``archive_chunk`` is
the attempt: it asks core.lifecycle for the next step and performs it (``STEPS``
names the function of app.copy_steps, app.after_copy_steps or app.gone_steps
for each) until there is none left. Once an attempt's outcome is known,
``_report`` says what became of the chunk: metrics, log lines the dashboard
reads, and outbound events (app.outbound), also for a chunk found already
archived, so nothing is lost between its archiving and the event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from recording_pipeline.app import after_copy_steps, copy_steps, gone_steps
from recording_pipeline.app.chunk_steps import ChunkDeps, ChunkRun, KnownBlobs
from recording_pipeline.app.manifests import ManifestWriter
from recording_pipeline.app.outbound import OutboundEvents
from recording_pipeline.app.transfer import MIB, PROCESS_BUFFER_BUDGET
from recording_pipeline.core.attempts import AttemptPolicy, AttemptProgress, Failure, Verdict
from recording_pipeline.core.errors import AttemptTimeoutError, InvalidEventError, NoAnswerError
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.lifecycle import ChunkFacts, Outcome, Source, Step, next_step, outcome
from recording_pipeline.core.naming import custody_name, manifest_name, quarantine_invalid_name, quarantine_name
from recording_pipeline.core.outbound import (
    OutboundEvent,
    chunk_archived,
    chunk_failed,
    chunk_lost,
    recording_completed,
)
from recording_pipeline.core.ports import ArchiveStore, ChunkQueue, RecordingSource, StateStore
from recording_pipeline.core.quarantine import QuarantineRecord
from recording_pipeline.core.state import ChunkState, ChunkUpdate, Manifest, RecordingState
from recording_pipeline.edges.telemetry import (
    EVENT_TO_DELETE,
    FAILURES,
    OUTCOMES,
    log_context,
    span_attributes,
    tracer,
)

log = logging.getLogger(__name__)

# What performs each step of core.lifecycle (every one but DONE): it does its I/O and returns the new facts.
STEPS: dict[Step, Callable[[ChunkRun, ChunkFacts], Awaitable[ChunkFacts]]] = {
    Step.FETCH_METADATA: copy_steps.fetch_metadata,
    Step.LOOK_UP_MEDIA: copy_steps.look_up_media,
    Step.LEASE: copy_steps.lease,
    Step.LEAVE_TO_HOLDER: copy_steps.leave_to_holder,
    Step.COPY: copy_steps.copy,
    Step.COMMIT: copy_steps.commit,
    Step.VERIFY: copy_steps.verify,
    Step.INDEX: after_copy_steps.index,
    Step.DELETE_SOURCE: after_copy_steps.delete_source,
    Step.RECORD: after_copy_steps.record,
    Step.FIND_COPY: gone_steps.find_copy,
    Step.RECORD_LOST: gone_steps.record_lost,
}

__all__ = ["ChunkWorker", "Outcome", "archive_chunk", "handle_chunk_message"]


@dataclass
class ChunkWorker:
    """What a chunk attempt needs; built once per process."""

    acs: RecordingSource
    store: ArchiveStore
    state: StateStore
    queue: ChunkQueue
    block_size: int
    concurrency: int
    policy: AttemptPolicy
    attempt_seconds: float | None = None  # an attempt ends itself after this (inside the host's functionTimeout)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ready: Callable[[], Awaitable[None]] | None = None  # once per process: the container and queues exist
    events: OutboundEvents | None = None  # the Event Grid topic, when OUTBOUND_EVENTS_TOPIC_ENDPOINT is set
    manifests: ManifestWriter = field(init=False)
    index_entries: KnownBlobs = field(init=False, default_factory=KnownBlobs)

    def __post_init__(self) -> None:
        self.manifests = ManifestWriter(self.state)
        if self.block_size * 2 > PROCESS_BUFFER_BUDGET:
            log.warning(
                "blocks of %d MiB leave room for fewer than 2 in the process's %d MiB buffer budget: "
                "downloads and uploads will not overlap",
                self.block_size // MIB,
                PROCESS_BUFFER_BUDGET // MIB,
            )

    @property
    def deps(self) -> ChunkDeps:
        return ChunkDeps(
            self.acs,
            self.store,
            self.state,
            self.queue,
            self.block_size,
            self.concurrency,
            self.policy.requeue_delay_seconds,
            self.clock,
            self.manifests,
            self.index_entries,
        )


async def handle_chunk_message(
    text: str, dequeue_count: int, worker: ChunkWorker, message_id: str | None = None
) -> Outcome | None:
    """Entry point for one queue message, shared by the Functions trigger and the local host.

    ``message_id``: the queue message's id, the same on every delivery of it; a chunk claimed under it was
    claimed by an earlier delivery of this very message, which has ended.

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
            if not await _proved(job, worker):
                error = NoAnswerError(f"attempt {dequeue_count - 1} ended without an answer (killed or timed out)")
                await _decide(job, Failure.NO_ANSWER, error, dequeue_count, False, worker)
                return None
            # Killed after the copy was proved (a scale-in, a restart for another invocation's timeout): what is
            # left — the index, the DELETE, the state — is short, so it is done now rather than quarantined.
            log.info("the chunk's copy is proved already; finishing it on this delivery")
        progress = AttemptProgress()
        try:
            with tracer.start_as_current_span("archive_chunk", attributes=span_attributes()) as span:
                span.set_attribute("messaging.dequeue_count", dequeue_count)
                first = dequeue_count == 1 and not job.requeues
                outcome, run = await _attempt(job, worker, progress, first, message_id)
                span.set_attribute("recording.outcome", outcome.value)
                await _report(job, run, outcome, worker)
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


async def _proved(job: RecordingChunk, worker: ChunkWorker) -> bool:
    """Whether the chunk's chain-of-custody record exists: its copy is archived and proved."""
    try:
        return await worker.store.read_bytes(custody_name(job.stem)) is not None
    except Exception as exc:  # decide as if not: the quarantined job can be replayed
        log.warning("could not look for the chunk's custody record: %s: %s", type(exc).__name__, exc)
        return False


async def _attempt(
    job: RecordingChunk,
    worker: ChunkWorker,
    progress: AttemptProgress,
    first_delivery: bool = False,
    message_id: str | None = None,
) -> tuple[Outcome, ChunkRun]:
    """One attempt, ended by its own deadline (a normal exception) well before the host's functionTimeout."""
    timeout = asyncio.timeout(worker.attempt_seconds)
    try:
        async with timeout:
            if worker.ready is not None:
                await worker.ready()
            return await _run(job, worker, progress, first_delivery, message_id)
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
        policy.attempts_made(dequeue_count, job.requeues),
        worker.queue.poison_name,
        error,
    )
    await _quarantine(job, error, dequeue_count, worker)
    OUTCOMES.add(1, {"outcome": "poisoned"})


async def archive_chunk(
    job: RecordingChunk,
    worker: ChunkWorker,
    progress: AttemptProgress | None = None,
    first_delivery: bool = False,
    message_id: str | None = None,
) -> Outcome:
    """One attempt: the lifecycle's steps, in the order ``next_step`` gives, until it says done.
    ``first_delivery``: the job's message is on its first delivery (a hint only: every step still checks)."""
    return (await _run(job, worker, progress or AttemptProgress(), first_delivery, message_id))[0]


async def _run(
    job: RecordingChunk,
    worker: ChunkWorker,
    progress: AttemptProgress,
    first_delivery: bool = False,
    message_id: str | None = None,
) -> tuple[Outcome, ChunkRun]:
    left = job.seconds_left(worker.clock())
    if left < 0:
        log.warning("chunk is %.0f s past its retention deadline; trying anyway", -left)
    run = ChunkRun(job, worker.deps, progress, first_delivery, message_id)
    facts = ChunkFacts(source=Source.PRESENT if job.delete_url else Source.NOTHING_TO_DELETE)
    async with run.lease_scope:
        while (step := next_step(facts)) is not Step.DONE:
            facts = await STEPS[step](run, facts)
    return outcome(facts, run.archived_here), run


async def _report(job: RecordingChunk, run: ChunkRun, result: Outcome, worker: ChunkWorker) -> None:
    """What became of the chunk, once the attempt's outcome is known; no storage request of its own.

    If the events can be neither published nor kept, a delayed copy of the job comes back to publish them (it finds
    the chunk archived, or lost, and reports again); only if that cannot be sent either does the attempt fail.
    """
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
        _log_recording_state(run.manifest, now)
    if worker.events is None:
        return
    if run.manifest is None and run.custody is not None:
        # Found archived by another attempt (ACS answered 404): this attempt recorded nothing, so the recording's
        # state comes from the manifest, read for the events only (when the DELETE was, whether it is complete).
        run.manifest = await _read_manifest(job, worker)
    events = _events_for(job, run, result, worker.events.archive_url, now)
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


def _events_for(
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


def _log_recording_state(manifest: Manifest, now: datetime) -> None:
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
        update = ChunkUpdate(ChunkState.PENDING, last_error=error, requeues=job.requeues + 1)
        await worker.manifests.record(job, update, worker.clock())
    except Exception:  # the requeued message is what matters
        log.exception("could not record the failure in the manifest")


async def _quarantine(job: RecordingChunk, error: str, dequeue_count: int, worker: ChunkWorker) -> None:
    """The job, its error and its attempts: a durable record in the state container, and a poison message that
    never expires. Either is enough for ``replay --poison``; the manifest is a view."""
    attempts = worker.policy.attempts_made(dequeue_count, job.requeues)
    kept = QuarantineRecord(error, attempts, worker.clock(), json.loads(job.model_dump_json()), None)
    await _keep_quarantined(quarantine_name(job.stem), kept, worker)
    try:
        update = ChunkUpdate(ChunkState.FAILED, last_error=error, failed_at=kept.quarantined_at)
        await worker.manifests.record(job, update, kept.quarantined_at)
    except Exception:
        log.exception("could not record the failure in the manifest")
    if worker.events is not None:
        events = worker.events
        failed = chunk_failed(job, error, attempts, kept.quarantined_at, events.archive_url, worker.queue.poison_name)
        try:
            await events.emit([failed])
        except Exception:  # the quarantine record and the poison message are what matter now
            log.exception("could not publish nor keep the ChunkFailed event")


async def _quarantine_text(text: str, exc: Exception, dequeue_count: int, worker: ChunkWorker) -> None:
    record = QuarantineRecord(f"{type(exc).__name__}: {exc}", dequeue_count, worker.clock(), None, text)
    await _keep_quarantined(quarantine_invalid_name(text), record, worker)


async def _keep_quarantined(name: str, record: QuarantineRecord, worker: ChunkWorker) -> None:
    """Both copies are attempted; the message is deleted only if at least one was written."""
    results = await asyncio.gather(
        worker.state.create(name, record.to_json(), "application/json"),
        worker.queue.send_poison(record),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    for problem in failed:
        log.error("could not keep a quarantined job: %s: %s", type(problem).__name__, problem)
    if len(failed) == len(results):
        raise failed[0]
