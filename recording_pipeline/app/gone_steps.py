"""The steps once ACS answered 404 for a chunk not yet proved here: find another attempt's copy, or record the
chunk lost (a ``_lost/`` record in the archive, the state ``lost`` in its manifest)."""

from __future__ import annotations

import json
import logging

from recording_pipeline import __version__
from recording_pipeline.app.chunk_steps import JSON, ChunkRun
from recording_pipeline.core.lifecycle import ChunkFacts, Copy
from recording_pipeline.core.naming import lost_name
from recording_pipeline.core.state import ChunkState, ChunkUpdate

log = logging.getLogger(__name__)


async def find_copy(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    """ACS answered 404: lost, unless another attempt archived (and deleted) it meanwhile."""
    run.custody = await run.read_custody()
    if run.custody is not None:  # kept: what the worker reports of the chunk (outbound events)
        log.info("ACS no longer has the chunk, and the archive holds its proved copy")
        return facts.replace(copy=Copy.FOUND)
    return facts.replace(copy=Copy.NONE)


async def record_lost(run: ChunkRun, facts: ChunkFacts) -> ChunkFacts:
    job, now, reason = run.job, run.deps.clock(), str(run.gone)
    lost = {
        "job": json.loads(job.model_dump_json()),
        "reason": reason,
        "detectedAt": now.isoformat(),
        "secondsPastDeadline": round(-job.seconds_left(now)),
        "appVersion": __version__,
    }
    await run.deps.archive.create(lost_name(job.stem), json.dumps(lost, indent=1).encode(), JSON)
    await run.deps.manifests.record(job, ChunkUpdate(ChunkState.LOST, lost_at=now, last_error=reason), now)
    log.error(
        "recording chunk lost: ACS no longer has it and it was never archived (%s)",
        reason,
        extra={"outcome": "lost"},
    )
    return facts.replace(lost_recorded=True)
