"""The one place the worker writes a recording's manifest, in the state container.

``record_chunk`` (core.state) is applied under ETag conditions by the store, so
concurrent attempts on chunks of one recording all land, and a late duplicate
never moves a chunk backwards.
"""

from __future__ import annotations

from datetime import datetime

from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.naming import manifest_name
from recording_pipeline.core.ports import StateStore
from recording_pipeline.core.state import ChunkUpdate, Manifest, record_chunk


async def record(store: StateStore, job: RecordingChunk, update: ChunkUpdate, now: datetime) -> Manifest:
    def apply(doc: object | None) -> object:
        current = Manifest.from_json(doc) if doc is not None else None
        return record_chunk(current, job, now, update).to_json()

    written = await store.update_json(manifest_name(job.call_id, job.recording_key), apply)
    return Manifest.from_json(written)
