"""One attempt at one chunk: the lifecycle's steps, in the order ``core.lifecycle.next_step`` gives, until it says
done; the attempt ends itself at its own deadline, well inside the host's functionTimeout.

``STEPS`` names, for each step, the function that performs it: it does its I/O
and returns what it observed as new facts (app.copy_steps up to the custody
record, app.after_copy_steps after it, app.gone_steps once ACS answered 404).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from recording_pipeline.app import after_copy_steps, copy_steps, gone_steps
from recording_pipeline.app.chunk_steps import ChunkRun
from recording_pipeline.app.worker_deps import ChunkWorker
from recording_pipeline.core.attempts import AttemptProgress
from recording_pipeline.core.errors import AttemptTimeoutError
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.lifecycle import ChunkFacts, Outcome, Source, Step, next_step, outcome

log = logging.getLogger(__name__)

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


async def run_attempt(run: ChunkRun) -> Outcome:
    """One attempt, ended by its own deadline (a normal exception) well before the host's functionTimeout."""
    worker = run.deps
    timeout = asyncio.timeout(worker.attempt_seconds)
    try:
        async with timeout:
            if worker.ready is not None:
                await worker.ready()
            return await perform_steps(run)
    except TimeoutError:
        if timeout.expired():
            raise AttemptTimeoutError(
                f"attempt stopped after {worker.attempt_seconds:.0f} s, before the host's functionTimeout; "
                f"{run.progress.staged_bytes} bytes staged in it"
            ) from None
        raise


async def archive_chunk(
    job: RecordingChunk,
    worker: ChunkWorker,
    progress: AttemptProgress | None = None,
    first_delivery: bool = False,
    message_id: str | None = None,
) -> Outcome:
    """One attempt outside any queue message (no deadline of its own, no report), as the tests drive it.
    ``first_delivery``: the job's message is on its first delivery (a hint only: every step still checks)."""
    return await perform_steps(ChunkRun(job, worker, progress or AttemptProgress(), first_delivery, message_id))


async def perform_steps(run: ChunkRun) -> Outcome:
    """The lifecycle's steps, in the order ``next_step`` gives, until it says done."""
    job = run.job
    left = job.seconds_left(run.deps.clock())
    if left < 0:
        log.warning("chunk is %.0f s past its retention deadline; trying anyway", -left)
    facts = ChunkFacts(source=Source.PRESENT if job.delete_url else Source.NOTHING_TO_DELETE)
    async with run.lease_scope:
        while (step := next_step(facts)) is not Step.DONE:
            facts = await STEPS[step](run, facts)
    return outcome(facts, run.archived_here)
