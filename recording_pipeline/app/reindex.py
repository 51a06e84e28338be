"""``reindex``: every index entry the archive's own records imply, created where it is missing.

The index is a view of the evidence, kept in the archive only so that it sits under WORM with it; this walk makes
it again from the archive alone (and the state's ``_quarantine/`` records, for recordings that never got further
than a failure): after an upgrade from a version that had no day index, or should an entry ever be missing. It
reads, per recording, one chain-of-custody record (its identity: the start day), the metadata document of each
archived chunk (its participants), its ``_lost/`` records and external record when that is all there is; and
every access record (the case index and the per-recording access entries come from them). Entries are created
once; one that exists is left as it is. The one full walk of the archive besides ``rebuild-state``; run it by
hand, it is nobody's lookup path.
"""

from __future__ import annotations

import asyncio
import json
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from recording_pipeline.app.access import read_access
from recording_pipeline.app.recording_index import entry_body
from recording_pipeline.core.custody import CustodyRecord, ExternalRecord
from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.metadata import parse_metadata
from recording_pipeline.core.naming import (
    ACCESS_PREFIX,
    LOST_PREFIX,
    QUARANTINE_PREFIX,
    case_entry,
    day_entry,
    participant_entry,
    start_day,
)
from recording_pipeline.core.ports import ArchiveStore, StateStore

CUSTODY = ".custody.json"
METADATA = ".metadata.json"
EXTERNAL = "external.json"
IN_FLIGHT = 16  # recordings read at once
ID_FIRST_CHARACTERS = string.digits + string.ascii_uppercase + string.ascii_lowercase  # core.naming.check_id


@dataclass
class ReindexReport:
    recordings: int = 0
    created: Counter[str] = field(default_factory=Counter)  # new entries, by kind: day, participant, case, access
    unreadable: list[str] = field(default_factory=list)  # "name: why"


@dataclass
class _Folder:
    """The archive's blobs of one recording, as the listing gave them, and its ``_lost/`` records."""

    call_id: str
    rec_key: str
    names: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


async def reindex(
    archive: ArchiveStore, state: StateStore, progress: Callable[[int], None] | None = None
) -> ReindexReport:
    """``progress`` is told how many recordings the walk has reached so far."""
    report = ReindexReport()
    reached = 0
    lost: dict[tuple[str, str], list[str]] = {}
    async for name in archive.list_names(LOST_PREFIX):  # few: chunks ACS no longer had
        parts = name.removeprefix(LOST_PREFIX).split("/")
        if len(parts) == 3:
            lost.setdefault((parts[0], parts[1]), []).append(name)
    gate = asyncio.Semaphore(IN_FLIGHT)
    pending: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def read(folder: _Folder) -> None:
        """Read it beside the walk, at most IN_FLIGHT at once: memory stays flat however large the archive."""
        nonlocal reached
        folder.lost = lost.pop((folder.call_id, folder.rec_key), [])
        reached += 1
        if progress is not None:
            progress(reached)
        await gate.acquire()
        task = asyncio.create_task(_recording(archive, folder, report))
        pending.add(task)
        task.add_done_callback(finished)

    def finished(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        gate.release()
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            failures.append(failure)

    # The recordings' folders, by the first character an id may have: the walk never lists _index/ itself.
    for first in ID_FIRST_CHARACTERS:
        folder: _Folder | None = None
        async for name in archive.list_names(first):
            parts = name.split("/")
            if len(parts) != 3:
                continue
            if folder is None or (folder.call_id, folder.rec_key) != (parts[0], parts[1]):
                if folder is not None:
                    await read(folder)  # the listing is in name order: that folder is complete
                folder = _Folder(parts[0], parts[1])
            folder.names.append(name)
        if folder is not None:
            await read(folder)
    for (call_id, rec_key), names in list(lost.items()):  # recordings none of whose chunks was archived
        await read(_Folder(call_id, rec_key, lost=names))
    await asyncio.gather(*pending, return_exceptions=True)
    if failures:
        raise failures[0]
    await _access_entries(archive, [name async for name in archive.list_names(ACCESS_PREFIX)], report)
    await _quarantined(archive, state, report)
    return report


async def _recording(archive: ArchiveStore, folder: _Folder, report: ReindexReport) -> None:
    report.recordings += 1
    custody = [n for n in folder.names if n.endswith(CUSTODY)]
    first = await _read(archive, custody[0], CustodyRecord.model_validate_json, report) if custody else None
    entries: list[tuple[str, str, bytes]] = []
    if first is not None:
        chunk = first.chunk
        body = entry_body(chunk.call_id, chunk.recording_id, chunk.recording_key, chunk.recording_start_time)
        day = start_day(chunk.recording_start_time, chunk.event_time)
        entries.append(("day", day_entry(day, chunk.call_id, chunk.recording_key), body))
        for name in custody:  # participants of archived chunks only, as the worker indexes them
            document = await archive.read_bytes(name.removesuffix(CUSTODY) + METADATA)
            for pid in parse_metadata(document[0]).participants if document else []:
                entries.append(("participant", participant_entry(pid, chunk.call_id, chunk.recording_key), body))
    elif any(n.endswith("/" + EXTERNAL) for n in folder.names):
        name = next(n for n in folder.names if n.endswith("/" + EXTERNAL))
        external = await _read(archive, name, ExternalRecord.model_validate_json, report)
        if external is not None:
            body = entry_body(external.call_id, external.recording_id, external.recording_key, None)
            day = start_day(None, external.received_at)
            entries.append(("day", day_entry(day, external.call_id, external.recording_key), body))
    elif folder.lost:
        entries.extend(await _from_job(archive, folder.lost[0], report))
    await _create(archive, entries, report)


async def _access_entries(archive: ArchiveStore, names: list[str], report: ReindexReport) -> None:
    for name in names:
        record = await read_access(archive, name)
        if record is None:
            report.unreadable.append(f"{name}: not an access record")
            continue
        entries = [("access", entry, json.dumps({"record": record.name}).encode()) for entry in record.entries()]
        if record.action == "hold-place" and record.case:
            for r in record.recordings:
                body = entry_body(r.call_id, None, r.recording_key, None)
                entries.append(("case", case_entry(record.case, r.call_id, r.recording_key), body))
        await _create(archive, entries, report)


async def _quarantined(archive: ArchiveStore, state: StateStore, report: ReindexReport) -> None:
    """Recordings whose only trace is a quarantined job: filed under their day all the same."""
    async for name in state.list_names(QUARANTINE_PREFIX):
        if not name.startswith(f"{QUARANTINE_PREFIX}_invalid/"):
            await _create(archive, await _from_job(state, name, report), report)


async def _from_job(store: ArchiveStore | StateStore, name: str, report: ReindexReport) -> list[tuple[str, str, bytes]]:
    """A lost record's or a quarantined job's recording, filed under its day."""
    job = await _read(store, name, _job_of, report)
    if job is None:
        return []
    body = entry_body(job.call_id, job.recording_id, job.recording_key, job.recording_start_time)
    day = start_day(job.recording_start_time, job.event_time)
    return [("day", day_entry(day, job.call_id, job.recording_key), body)]


def _job_of(data: bytes) -> RecordingChunk:
    return decode_job(json.dumps(json.loads(data)["job"]))


async def _read[R](
    store: ArchiveStore | StateStore, name: str, parse: Callable[[bytes], R], report: ReindexReport
) -> R | None:
    found = await store.read_bytes(name)
    if found is None:
        return None
    try:
        return parse(found[0])
    except (ValidationError, ValueError, KeyError, TypeError, InvalidEventError) as exc:
        report.unreadable.append(f"{name}: {type(exc).__name__}")
        return None


async def _create(archive: ArchiveStore, entries: list[tuple[str, str, bytes]], report: ReindexReport) -> None:
    kinds = {name: kind for kind, name, _ in entries}
    unique = list({name: body for _, name, body in entries}.items())
    gate = asyncio.Semaphore(8)

    async def create(name: str, body: bytes) -> None:
        async with gate:
            if await archive.create(name, body, "application/json"):
                report.created[kinds[name]] += 1

    await asyncio.gather(*(create(name, body) for name, body in unique))
