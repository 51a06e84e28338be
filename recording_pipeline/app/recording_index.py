"""The archive's index: which recordings started on a day, were in a participant's calls, or a legal-hold case
covered; each lookup one prefix listing of what it returns, never a walk of the archive or the state.

Entries live in the write-once archive (``_index/``, core.naming), created once and never changed, so they are
under WORM with the evidence they point at. Each names one recording (its folder ``{callId}/{recordingKey}``)
and holds a little JSON about it; what changes about the recording stays in its manifest. A call needs no entry
of its own: the archive's ``{callId}/`` folder already is one, and ``_lost/{callId}/`` for chunks that were
never archived.

Who files what: the worker files a recording under its start day the first time it writes the recording's
manifest (``app/manifests``), whatever became of the chunk, so failed and lost recordings are found as well as
archived ones; the participant entries come after a chunk's proof (``after_copy_steps.index``); a legal hold's
cases come from ``hold place``. ``reindex`` makes every missing entry again from the archive alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from recording_pipeline.core.naming import (
    DAYS_PREFIX,
    LOST_PREFIX,
    case_entry,
    case_prefix,
    day_entry,
    day_prefix,
    manifest_name,
    participant_prefix,
    start_day,
)
from recording_pipeline.core.ports import ArchiveStore

JSON = "application/json"
LIST_CONCURRENCY = 16  # day listings at once
CREATE_CONCURRENCY = 32


class Recording(Protocol):
    """What the index needs to know about a recording: a job, or a chunk identity from a custody record."""

    call_id: str
    recording_id: str | None
    recording_key: str
    recording_start_time: datetime | None
    event_time: datetime


class KnownNames(Protocol):
    """Names this process knows exist (app.worker_deps.KnownBlobs)."""

    def __contains__(self, name: object) -> bool: ...

    def add(self, name: str) -> None: ...


@dataclass(frozen=True, order=True)
class RecordingRef:
    """One recording, as the index names it."""

    call_id: str
    recording_key: str

    @property
    def manifest(self) -> str:
        return manifest_name(self.call_id, self.recording_key)


def entry_body(call_id: str, recording_id: str | None, rec_key: str, started: datetime | None) -> bytes:
    """What every index entry holds: enough to name the recording and find its manifest without another read."""
    return json.dumps(
        {
            "callId": call_id,
            "recordingId": recording_id,
            "recordingKey": rec_key,
            "recordingStartTime": started.isoformat() if started else None,
            "manifest": manifest_name(call_id, rec_key),
        }
    ).encode()


def filed_day(recording: Recording) -> date:
    return start_day(recording.recording_start_time, recording.event_time)


class DayIndex:
    """Files recordings under their start day in the archive, each once per process: a name this process created
    (or found) is there for good, so a recording's later chunks cost nothing here."""

    def __init__(self, archive: ArchiveStore, known: KnownNames) -> None:
        self._archive = archive
        self._known = known

    async def file(self, recording: Recording) -> None:
        name = day_entry(filed_day(recording), recording.call_id, recording.recording_key)
        if name in self._known:
            return
        body = entry_body(
            recording.call_id, recording.recording_id, recording.recording_key, recording.recording_start_time
        )
        await self._archive.create(name, body, JSON)
        self._known.add(name)


# --- lookups ---------------------------------------------------------------------------------------------------


def days_between(since: datetime, until: datetime) -> list[date]:
    """The UTC days a start time in [since, until) can fall on."""
    first, last = since.astimezone(UTC).date(), (until.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def recordings_started(
    archive: ArchiveStore, since: datetime | None, until: datetime | None, now: datetime
) -> list[RecordingRef]:
    """The recordings filed under the days from ``since`` to ``until`` (now, if not given): one listing per day.
    Without ``since``, one listing of the whole day index (every recording: what that lookup returns)."""
    if since is None:
        last = until.astimezone(UTC).date() if until else None
        found = []
        async for name in archive.list_names(DAYS_PREFIX):
            filed, _, rest = name[len(DAYS_PREFIX) :].partition("/")
            if last is None or date.fromisoformat(filed) <= last:
                found.extend(_refs(rest))
        return sorted(set(found))
    until = until or now + timedelta(days=1)
    if until <= since:
        return []
    gate = asyncio.Semaphore(LIST_CONCURRENCY)

    async def listed(prefix: str) -> list[RecordingRef]:
        async with gate:
            return [ref async for ref in _listed(archive, prefix)]

    days = await asyncio.gather(*(listed(day_prefix(d)) for d in days_between(since, until)))
    return sorted({ref for refs in days for ref in refs})


async def recordings_of_call(archive: ArchiveStore, call_id: str, rec_key: str | None = None) -> list[RecordingRef]:
    """The recordings of a call (or the one named) that left anything in the archive: its folder, and its
    ``_lost/`` folder for a recording none of whose chunks was archived."""
    folder = f"{call_id}/{rec_key}/" if rec_key else f"{call_id}/"
    found: set[RecordingRef] = set()
    for prefix in (folder, f"{LOST_PREFIX}{folder}"):
        async for name in archive.list_names(prefix):
            parts = name.removeprefix(LOST_PREFIX).split("/")
            if len(parts) == 3:
                found.add(RecordingRef(parts[0], parts[1]))
    return sorted(found)


async def recordings_of_participant(archive: ArchiveStore, participant_id: str) -> tuple[list[RecordingRef], list[str]]:
    """The recordings a participant was in (one listing), and the entries that do not name one."""
    return await _index_listing(archive, participant_prefix(participant_id))


async def recordings_of_case(archive: ArchiveStore, case: str) -> tuple[list[RecordingRef], list[str]]:
    """The recordings a legal-hold case covered (one listing), and the entries that do not name one."""
    return await _index_listing(archive, case_prefix(case))


async def file_case(archive: ArchiveStore, case: str, recordings: Iterable[tuple[str, str]]) -> int:
    """The case's entries for ``recordings``, created once each: how many were new."""
    unique = dict.fromkeys(recordings)
    return await create_entries(archive, [(case_entry(case, c, k), entry_body(c, None, k, None)) for c, k in unique])


async def create_entries(archive: ArchiveStore, entries: list[tuple[str, bytes]]) -> int:
    """Index entries created once each, a few at a time: how many were new."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(name: str, body: bytes) -> bool:
        async with gate:
            return await archive.create(name, body, JSON)

    return sum(await asyncio.gather(*(create(name, body) for name, body in entries)))


async def _index_listing(archive: ArchiveStore, prefix: str) -> tuple[list[RecordingRef], list[str]]:
    found: set[RecordingRef] = set()
    odd: list[str] = []
    async for name in archive.list_names(prefix):
        refs = _refs(name[len(prefix) :])
        found.update(refs)
        if not refs:
            odd.append(name)
    return sorted(found), odd


async def _listed(archive: ArchiveStore, prefix: str) -> AsyncIterator[RecordingRef]:
    async for name in archive.list_names(prefix):
        for ref in _refs(name[len(prefix) :]):
            yield ref


def _refs(rest: str) -> list[RecordingRef]:
    parts = rest.split("/")
    return [RecordingRef(parts[0], parts[1])] if len(parts) == 2 and all(parts) else []
