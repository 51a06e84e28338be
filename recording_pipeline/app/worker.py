"""The chunk worker: one queue message in, one attempt at the chunk (app.attempt), one decision about the message.

``handle_chunk_message`` decodes the message, runs an attempt, has its outcome
reported (app.reporting) and, if the attempt failed, acts on what core.attempts
decides: let the host deliver the message again, continue or try again later
with a fresh message, or quarantine the job.
"""

from __future__ import annotations

import asyncio
import json
import logging

from recording_pipeline.app.attempt import run_attempt
from recording_pipeline.app.boundary import contained, interrupted
from recording_pipeline.app.chunk_steps import ChunkRun
from recording_pipeline.app.reporting import report
from recording_pipeline.app.worker_deps import ChunkWorker
from recording_pipeline.core.attempts import AttemptProgress, Failure, Verdict
from recording_pipeline.core.errors import AttemptTimeoutError, InvalidEventError, NoAnswerError
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.lifecycle import Outcome
from recording_pipeline.core.naming import custody_name, quarantine_invalid_name, quarantine_name
from recording_pipeline.core.outbound import chunk_failed
from recording_pipeline.core.quarantine import QuarantineRecord
from recording_pipeline.core.state import ChunkState, ChunkUpdate
from recording_pipeline.edges.telemetry import FAILURES, OUTCOMES, log_context, span_attributes, tracer

log = logging.getLogger(__name__)

__all__ = ["ChunkWorker", "Outcome", "handle_chunk_message"]


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
        first = dequeue_count == 1 and not job.requeues
        run = ChunkRun(job, worker, AttemptProgress(), first, message_id)
        try:
            # A task inside the attempt cancelled under it (a reset connection) ends the attempt, not the worker.
            with (
                contained("the attempt"),
                tracer.start_as_current_span("archive_chunk", attributes=span_attributes()) as span,
            ):
                span.set_attribute("messaging.dequeue_count", dequeue_count)
                outcome = await run_attempt(run)
                span.set_attribute("recording.outcome", outcome.value)
                await report(run, outcome)
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
            await _decide(job, failure, exc, dequeue_count, run.progress.staged_bytes > 0, worker)
            return None


async def _proved(job: RecordingChunk, worker: ChunkWorker) -> bool:
    """Whether the chunk's chain-of-custody record exists: its copy is archived and proved."""
    try:
        return await worker.archive.read_bytes(custody_name(job.stem)) is not None
    except Exception as exc:  # decide as if not: the quarantined job can be replayed
        log.warning("could not look for the chunk's custody record: %s: %s", type(exc).__name__, exc)
        return False


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
        first = failed[0]
        raise interrupted(first, "keeping a quarantined job") or first
