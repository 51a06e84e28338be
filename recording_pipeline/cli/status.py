"""``recording-archive status``: the recordings started between two times (all, without ``--since``), found in the
archive's day index, as their manifests tell them (chunks, bytes, time left before the ACS deadline, legal holds),
filtered by state; and the poison queue's count.

One listing of the day index per day asked for, then the manifests of what it names: a day's lookup costs what it
returns, however large the archive (``bench/index_bench.py``). It only reads. ``recording_status`` returns plain
data (dataclasses with a JSON-ready ``to_dict``); ``run`` prints it, as a table or JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from recording_pipeline.app.recording_index import recordings_started
from recording_pipeline.cli.holds import held_recordings
from recording_pipeline.cli.manifests import read_manifests
from recording_pipeline.cli.output import (
    STATUS_HEADERS,
    format_bytes,
    format_duration,
    format_time,
    render_table,
    to_json,
)
from recording_pipeline.cli.storage import OperatorEdges
from recording_pipeline.core.errors import OperatorInputError, StorageError
from recording_pipeline.core.ports import ArchiveStore, StateStore
from recording_pipeline.core.state import ChunkState, Manifest, RecordingState

FAILED = ChunkState.FAILED.value  # the status filter for recordings with a quarantined chunk
STATE_FILTERS = (*(s.value for s in RecordingState), FAILED)


@dataclass(frozen=True)
class RecordingStatus:
    """One recording as its manifest tells it."""

    manifest: str
    call_id: str
    recording_key: str
    recording_id: str | None
    state: RecordingState
    chunks_archived: int
    chunks_total: int | None  # lastChunkIndex + 1, once the chunk ending the session is known
    chunks_failed: int
    chunks_lost: int
    missing_chunks: tuple[int, ...]  # indexes up to the last known one without an archived copy
    total_bytes: int
    recording_start_time: datetime | None
    created_at: datetime | None
    expires_at: datetime | None
    seconds_left: float | None  # before the earliest ACS deadline; only while the recording is incomplete
    updated_at: datetime | None
    holds: tuple[str, ...] = ()  # the cases whose legal hold covers it

    @property
    def started(self) -> datetime | None:
        return self.recording_start_time or self.created_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "recordingId": self.recording_id,
            "recordingKey": self.recording_key,
            "state": self.state.value,
            "chunksArchived": self.chunks_archived,
            "chunksTotal": self.chunks_total,
            "chunksFailed": self.chunks_failed,
            "chunksLost": self.chunks_lost,
            "missingChunks": list(self.missing_chunks),
            "totalBytes": self.total_bytes,
            "recordingStartTime": iso(self.recording_start_time),
            "createdAt": iso(self.created_at),
            "expiresAt": iso(self.expires_at),
            "secondsLeft": None if self.seconds_left is None else round(self.seconds_left),
            "updatedAt": iso(self.updated_at),
            "holds": list(self.holds),
            "manifest": self.manifest,
        }


@dataclass(frozen=True)
class StatusReport:
    recordings: list[RecordingStatus]
    unreadable: list[str] = field(default_factory=list)  # "name: why" for manifests that could not be read


def summarize(name: str, doc: Manifest, now: datetime, holds: tuple[str, ...] = ()) -> RecordingStatus:
    """A manifest → its status line. Pure."""
    incomplete = doc.state is RecordingState.INCOMPLETE
    deadline = as_utc(doc.expires_at) if doc.expires_at else None
    return RecordingStatus(
        manifest=name,
        call_id=doc.call_id,
        recording_key=doc.recording_key,
        recording_id=doc.recording_id,
        state=doc.state,
        chunks_archived=doc.count(ChunkState.ARCHIVED),
        chunks_total=doc.total_chunks,
        chunks_failed=doc.count(ChunkState.FAILED),
        chunks_lost=doc.count(ChunkState.LOST),
        missing_chunks=doc.missing_chunks(),
        total_bytes=doc.archived_bytes,
        recording_start_time=utc(doc.recording_start_time),
        created_at=utc(doc.created_at),
        expires_at=deadline,
        seconds_left=(deadline - now).total_seconds() if deadline and incomplete else None,
        updated_at=utc(doc.updated_at),
        holds=holds,
    )


def matches(status: RecordingStatus, since: datetime | None, until: datetime | None, in_state: str | None) -> bool:
    started = status.started
    if since is not None and (started is None or started < since):
        return False
    if until is not None and (started is None or started >= until):
        return False
    if in_state == FAILED:
        return status.chunks_failed > 0
    return in_state is None or status.state.value == in_state


async def recording_status(
    archive: ArchiveStore,
    state: StateStore,
    since: datetime | None = None,
    until: datetime | None = None,
    in_state: str | None = None,
    now: datetime | None = None,
) -> StatusReport:
    """The recordings (oldest start first) started at or after ``since`` and before ``until``, from the archive's
    day index and their manifests; optionally only those in the recording state ``in_state`` (or ``failed``: a
    chunk quarantined). An index entry whose manifest is absent is reported as unreadable (rebuild-state)."""
    if in_state is not None and in_state not in STATE_FILTERS:
        raise OperatorInputError(f"state must be one of {', '.join(STATE_FILTERS)}")
    now = now or datetime.now(UTC)
    since, until = (as_utc(since) if since else None), (as_utc(until) if until else None)
    refs = await recordings_started(archive, since, until, now)
    docs, unreadable = await read_manifests(state, [ref.manifest for ref in refs])
    bad = {line.split(": ", 1)[0] for line in unreadable}
    unreadable += [
        f"{name}: no manifest (rebuild-state makes it again)" for name, doc in docs if not doc and name not in bad
    ]
    holds = await held_recordings(state)
    found = [summarize(n, doc, now, holds.get((doc.call_id, doc.recording_key), ())) for n, doc in docs if doc]
    selected = [s for s in found if matches(s, since, until, in_state)]
    return StatusReport(sorted(selected, key=order), unreadable)


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def order(status: RecordingStatus) -> tuple[datetime, str, str]:
    return (status.started or datetime.min.replace(tzinfo=UTC), status.call_id, status.recording_key)


def chunks_cell(status: RecordingStatus) -> str:
    if status.state is RecordingState.EXTERNAL:
        return "-"
    total = "?" if status.chunks_total is None else str(status.chunks_total)
    return f"{status.chunks_archived}/{total}"


def notes_cell(status: RecordingStatus) -> str:
    notes = []
    if status.chunks_failed:
        notes.append(f"{status.chunks_failed} failed")
    if status.chunks_lost:
        notes.append(f"{status.chunks_lost} lost")
    if status.missing_chunks and status.state is not RecordingState.EXTERNAL:
        shown = ",".join(str(i) for i in status.missing_chunks[:5])
        more = "…" if len(status.missing_chunks) > 5 else ""
        notes.append(f"not archived: {shown}{more}")
    if status.chunks_total is None and status.state not in (RecordingState.EXTERNAL, RecordingState.LOST):
        notes.append("last chunk not seen yet")
    if status.holds:
        notes.append(f"legal hold: {', '.join(status.holds)}")
    return "; ".join(notes)


def status_table(recordings: Sequence[RecordingStatus]) -> str:
    if not recordings:
        return "no recordings match"
    rows = [
        [
            r.call_id,
            r.recording_key,
            r.state.value,
            chunks_cell(r),
            format_bytes(r.total_bytes),
            format_duration(r.seconds_left),
            format_time(r.recording_start_time or r.created_at),
            format_time(r.updated_at),
            notes_cell(r),
        ]
        for r in recordings
    ]
    return render_table(STATUS_HEADERS, rows, right=(3, 4, 5))


async def run(edges: OperatorEdges, args: argparse.Namespace) -> int:
    report = await recording_status(edges.archive, edges.state, since=args.since, until=args.until, in_state=args.state)
    print(to_json([r.to_dict() for r in report.recordings]) if args.json else status_table(report.recordings))
    for line in report.unreadable:
        print(f"unreadable manifest: {line}", file=sys.stderr)
    queue = edges.queue
    try:
        waiting = await queue.poison_count() if queue is not None else 0
    except StorageError as exc:  # the recordings are shown; the poison queue is another account's
        print(f"status: the poison queue's length could not be read: {exc}", file=sys.stderr)
        waiting = 0
    if waiting and queue is not None:
        # Not every way into the poison queue can mark a manifest (the host poisons a job whose last attempt died).
        print(f"{waiting} job(s) wait in {queue.poison_name}: recording-archive replay --poison", file=sys.stderr)
    return 0
