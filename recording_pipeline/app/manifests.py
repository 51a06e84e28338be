"""The one place the worker writes a recording's manifest, in the state container.

``record_chunk`` (core.state) is applied under ETag conditions by the state store, so
concurrent attempts on chunks of one recording all land, and a late duplicate
never moves a chunk backwards.

A process writes each manifest from the version it wrote last (kept for a
while, for the recordings it worked on recently), one write at a time per
recording: a chunk then costs one conditional write instead of a read and a
write. When another instance wrote in between, the condition fails and the
write falls back to reading first, so the guess is never trusted, only tried.

Beside each write, the recording is filed under its start day in the archive's index (``DayIndex``: once per
process per recording), whatever became of the chunk: a day's lookup finds failed and lost recordings as well
as archived ones, and never misses one that has a manifest (the entry is written with it, and an attempt whose
entry could not be written fails and is tried again).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime

from recording_pipeline.app.boundary import interrupted
from recording_pipeline.app.recording_index import DayIndex
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.naming import manifest_name
from recording_pipeline.core.ports import StateStore, Versioned
from recording_pipeline.core.state import ChunkUpdate, Manifest, record_chunk

REMEMBERED = 1024  # manifests whose last written version a process keeps


class ManifestWriter:
    def __init__(self, state: StateStore, index: DayIndex | None = None) -> None:
        self._state = state
        self._index = index
        self._known: OrderedDict[str, Versioned] = OrderedDict()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # one writer at a time per manifest, and its queue

    async def record(
        self, job: RecordingChunk, update: ChunkUpdate, now: datetime, new_recording: bool = False
    ) -> Manifest:
        """``new_recording``: the caller has reason to think no manifest exists yet (it just claimed the first
        chunk of a recording); the first write then only creates, without a read."""
        if self._index is None:
            return await self._record(job, update, now, new_recording)
        # Both run to their end; a stray cancellation in either (a reset connection) is an ordinary failure here,
        # which the worker's decision can catch like any other (app.boundary).
        written, filed = await asyncio.gather(
            self._record(job, update, now, new_recording), self._index.file(job), return_exceptions=True
        )
        for result in (written, filed):
            if isinstance(result, BaseException):
                raise interrupted(result, "writing the manifest and the day entry") or result
        assert isinstance(written, Manifest)
        return written

    async def _record(self, job: RecordingChunk, update: ChunkUpdate, now: datetime, new_recording: bool) -> Manifest:
        name = manifest_name(job.call_id, job.recording_key)

        def apply(doc: object | None) -> object:
            current = Manifest.from_json(doc) if doc is not None else None
            return record_chunk(current, job, now, update).to_json()

        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                known = self._known.pop(name, None) or (Versioned(None, None) if new_recording else None)
                written = await self._state.update_json(name, apply, known=known)
                self._remember(name, written)
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)
        return Manifest.from_json(written.doc)

    def _remember(self, name: str, version: Versioned) -> None:
        self._known[name] = version
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)
