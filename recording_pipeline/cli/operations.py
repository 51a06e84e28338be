"""What an operator asks of the archive: status, verify, participant lookups.

Everything here reads — manifests from the state container, evidence and
media from the archive — and returns plain data (dataclasses with a JSON-ready
``to_dict``); rendering is ``cli.output``'s job. Nothing writes.

- ``recording_status``: every recording's manifest, summarised (chunks, bytes,
  time left before the ACS deadline, legal holds), filtered by start time and state.
- ``verify_recordings``: re-hash archived media, streamed, against its chain-of-
  custody record (size, sha256, block list) and the manifest.
- ``participant_recordings``: the recordings a participant was in, from the
  participant index (one prefix listing), joined with their manifests.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from recording_pipeline.cli.holds import held_recordings
from recording_pipeline.cli.targets import parse_target
from recording_pipeline.core.custody import CustodyRecord
from recording_pipeline.core.errors import (
    BlobArchivedError,
    BlobTooLargeError,
    OperatorInputError,
    StorageError,
)
from recording_pipeline.core.naming import (
    chunk_stem,
    custody_name,
    manifest_name,
    participant_digest,
    participant_prefix,
)
from recording_pipeline.core.ports import ArchiveStore, StateStore
from recording_pipeline.core.state import ChunkState, Manifest, RecordingState

MANIFEST_SUFFIX = "/manifest.json"
FAILED = ChunkState.FAILED.value  # the status filter for recordings with a quarantined chunk
STATE_FILTERS = (*(s.value for s in RecordingState), FAILED)
READ_CONCURRENCY = 16
VERIFY_CONCURRENCY = 4

Progress = Callable[[int, int], None]  # (bytes done, bytes in total)


# --- status --------------------------------------------------------------


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
            "recordingStartTime": _iso(self.recording_start_time),
            "createdAt": _iso(self.created_at),
            "expiresAt": _iso(self.expires_at),
            "secondsLeft": None if self.seconds_left is None else round(self.seconds_left),
            "updatedAt": _iso(self.updated_at),
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
        recording_start_time=_utc(doc.recording_start_time),
        created_at=_utc(doc.created_at),
        expires_at=deadline,
        seconds_left=(deadline - now).total_seconds() if deadline and incomplete else None,
        updated_at=_utc(doc.updated_at),
        holds=holds,
    )


def matches(status: RecordingStatus, since: datetime | None, state: str | None) -> bool:
    if since is not None:
        started = status.started
        if started is None or started < since:
            return False
    if state == FAILED:
        return status.chunks_failed > 0
    return state is None or status.state.value == state


async def recording_status(
    ledger: StateStore, since: datetime | None = None, state: str | None = None, now: datetime | None = None
) -> StatusReport:
    """Every recording in the state container (oldest start first), optionally filtered."""
    if state is not None and state not in STATE_FILTERS:
        raise OperatorInputError(f"state must be one of {', '.join(STATE_FILTERS)}")
    now = now or datetime.now(UTC)
    since = as_utc(since) if since else None
    docs, unreadable = await read_manifests(ledger, await list_manifests(ledger))
    holds = await held_recordings(ledger)
    found = [summarize(n, doc, now, holds.get((doc.call_id, doc.recording_key), ())) for n, doc in docs if doc]
    selected = [s for s in found if matches(s, since, state)]
    return StatusReport(sorted(selected, key=_order), unreadable)


async def list_manifests(store: StateStore, prefix: str = "") -> list[str]:
    """Names of the manifests under ``prefix``: ``{callId}/{recordingKey}/manifest.json``, never ``_...``."""
    return [
        name
        async for name in store.list_names(prefix)
        if name.endswith(MANIFEST_SUFFIX) and not name.startswith("_") and name.count("/") == 2
    ]


async def read_manifests(store: StateStore, names: list[str]) -> tuple[list[tuple[str, Manifest | None]], list[str]]:
    """Each name with its manifest (None if absent or unreadable), in order; and "name: why" for the unreadable."""
    unreadable: list[str] = []

    async def read(name: str) -> tuple[str, Manifest | None]:
        try:
            found = await store.read_json(name)
            return name, Manifest.from_json(found[0]) if found is not None else None
        except BlobArchivedError:  # the lifecycle rule moved it to the archive tier
            unreadable.append(f"{name}: in the archive tier: rehydrate it to read")
        except BlobTooLargeError as exc:
            unreadable.append(f"{name}: {exc}")
        except (ValueError, ValidationError):
            unreadable.append(f"{name}: not a manifest")
        except StorageError as exc:
            unreadable.append(f"{name}: {exc}")
        return name, None

    results = await _bounded(READ_CONCURRENCY, (read(n) for n in names))
    return results, unreadable


# --- verify --------------------------------------------------------------


class CheckResult(StrEnum):
    OK = "ok"
    MISMATCH = "mismatch"
    MISSING = "missing"
    SKIPPED = "skipped"  # not archived: nothing to verify


@dataclass
class ChunkCheck:
    index: int
    document_id: str | None
    chunk_state: ChunkState
    media_blob: str | None
    result: CheckResult = CheckResult.OK
    expected_size: int | None = None
    actual_size: int | None = None
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, result: CheckResult, problem: str) -> None:
        if self.result is not CheckResult.MISSING:
            self.result = result
        self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "documentId": self.document_id,
            "chunkState": self.chunk_state.value,
            "mediaBlob": self.media_blob,
            "result": self.result.value,
            "expectedSize": self.expected_size,
            "actualSize": self.actual_size,
            "expectedSha256": self.expected_sha256,
            "actualSha256": self.actual_sha256,
            "problems": self.problems,
        }


@dataclass
class RecordingCheck:
    manifest: str
    call_id: str
    recording_key: str
    state: RecordingState | None
    chunks: list[ChunkCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.result in (CheckResult.OK, CheckResult.SKIPPED) for c in self.chunks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "recordingKey": self.recording_key,
            "manifest": self.manifest,
            "state": self.state.value if self.state else None,
            "ok": self.ok,
            "problems": self.problems,
            "chunks": [c.to_dict() for c in self.chunks],
        }


async def verify_recordings(
    archive: ArchiveStore,
    ledger: StateStore,
    targets: list[str] | None = None,
    progress: Progress | None = None,
    concurrency: int = VERIFY_CONCURRENCY,
) -> list[RecordingCheck]:
    """Re-hash every archived chunk of the named recordings (all, with none named) against its custody record."""
    names: list[str] = []
    checks: list[RecordingCheck] = []
    for call_id, rec_key in (parse_target(t) for t in targets or []):
        if rec_key is not None:
            names.append(manifest_name(call_id, rec_key))
            continue
        under = await list_manifests(ledger, f"{call_id}/")
        if not under:
            checks.append(RecordingCheck(f"{call_id}/", call_id, "", None, problems=["no recording under this call"]))
        names.extend(under)
    if not targets:
        names = await list_manifests(ledger)
    docs, unreadable = await read_manifests(ledger, list(dict.fromkeys(names)))
    bad = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in unreadable}
    for name, doc in docs:
        call_id, rec_key, *_rest = [*name.split("/"), "", ""]
        check = RecordingCheck(name, call_id, rec_key, doc.state if doc else None)
        if doc is None:
            check.problems.append(f"manifest unreadable: {bad[name]}" if name in bad else "no manifest")
        else:
            check.chunks = _planned_checks(doc)
        checks.append(check)
    stems = {
        id(c): chunk_stem(r.call_id, r.recording_key, c.index, c.document_id or "") for r in checks for c in r.chunks
    }

    work = [c for r in checks for c in r.chunks if c.result is CheckResult.OK]
    total = sum(c.expected_size or 0 for c in work)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(done, total), total)

    if progress is not None:
        progress(0, total)
    await _bounded(concurrency, (_verify_chunk(archive, c, stems[id(c)], advance) for c in work))
    return sorted(checks, key=lambda r: (r.call_id, r.recording_key))


def _planned_checks(doc: Manifest) -> list[ChunkCheck]:
    planned = []
    for _key, entry in sorted(doc.chunks.items()):
        check = ChunkCheck(
            index=entry.index,
            document_id=entry.document_id,
            chunk_state=entry.state,
            media_blob=entry.media_blob,
            expected_size=entry.size,
            expected_sha256=entry.sha256,
        )
        if entry.state is not ChunkState.ARCHIVED:
            check.result = CheckResult.SKIPPED
        elif not (check.media_blob and check.expected_size is not None and check.expected_sha256):
            check.fail(CheckResult.MISMATCH, "manifest lacks the chunk's mediaBlob, size or sha256")
        planned.append(check)
    return planned


async def _verify_chunk(archive: ArchiveStore, check: ChunkCheck, stem: str, advance: Callable[[int], None]) -> None:
    """The media, re-hashed, against its chain-of-custody record and the manifest."""
    assert check.media_blob is not None and check.expected_size is not None
    expected = check.expected_size
    custody = await _custody(archive, stem, check)
    info = await archive.info(check.media_blob)
    if info is None:
        check.fail(CheckResult.MISSING, "media blob is missing")
        advance(expected)
        return
    check.actual_size = info.size
    if info.size != expected:
        check.fail(CheckResult.MISMATCH, f"blob is {info.size} bytes, manifest says {expected}")
    if custody is not None:
        if (custody.size, custody.sha256) != (expected, check.expected_sha256):
            check.fail(CheckResult.MISMATCH, "the custody record and the manifest disagree on size or sha256")
        committed = [(b.block_id, b.size) for b in await archive.committed_blocks(check.media_blob)]
        if committed != [(b.id, b.size) for b in custody.blocks]:
            check.fail(CheckResult.MISMATCH, "committed block list is not the one the custody record names")
        document = await archive.read_bytes(custody.metadata_blob)
        if document is None:
            check.fail(CheckResult.MISSING, "the metadata document is missing")
        elif hashlib.sha256(document[0]).hexdigest() != custody.metadata_sha256:
            check.fail(CheckResult.MISMATCH, "the metadata document's sha256 is not the custody record's")
    read = 0

    def step(count: int) -> None:
        nonlocal read
        read += count
        advance(count)

    try:
        check.actual_sha256, _size = await archive.sha256(check.media_blob, step)
    except StorageError as exc:
        if exc.status != 404:
            raise
        check.fail(CheckResult.MISSING, "media blob disappeared while it was read")
        advance(max(0, expected - read))
        return
    advance(max(0, expected - read))
    if read != info.size:
        check.fail(CheckResult.MISMATCH, f"read {read} bytes of a {info.size}-byte blob")
    if check.actual_sha256 != check.expected_sha256:
        check.fail(
            CheckResult.MISMATCH, f"content sha256 is {check.actual_sha256}, manifest says {check.expected_sha256}"
        )
    if custody is not None and check.actual_sha256 != custody.sha256:
        check.fail(CheckResult.MISMATCH, f"content sha256 is {check.actual_sha256}, custody says {custody.sha256}")


async def _custody(archive: ArchiveStore, stem: str, check: ChunkCheck) -> CustodyRecord | None:
    found = await archive.read_bytes(custody_name(stem))
    if found is None:
        check.fail(CheckResult.MISMATCH, "no chain-of-custody record")
        return None
    try:
        return CustodyRecord.model_validate_json(found[0])
    except ValidationError:
        check.fail(CheckResult.MISMATCH, "the chain-of-custody record is not one")
        return None


# --- participant ---------------------------------------------------------


@dataclass(frozen=True)
class ParticipantReport:
    participant_id: str
    digest: str
    recordings: list[RecordingStatus]
    dangling: list[str] = field(default_factory=list)  # index entries whose manifest is absent or unreadable

    def to_dict(self) -> dict[str, Any]:
        return {
            "participantId": self.participant_id,
            "digest": self.digest,
            "recordings": [r.to_dict() for r in self.recordings],
            "dangling": self.dangling,
        }


async def participant_recordings(
    archive: ArchiveStore, ledger: StateStore, participant_id: str, now: datetime | None = None
) -> ParticipantReport:
    """The recordings ``participant_id`` was in: one listing of its index prefix, then their manifests."""
    if not participant_id:
        raise OperatorInputError("participant id is empty")
    now = now or datetime.now(UTC)
    prefix = participant_prefix(participant_id)
    names: list[str] = []
    dangling: list[str] = []
    async for entry in archive.list_names(prefix):
        parts = entry[len(prefix) :].split("/")
        if len(parts) == 2 and all(parts):
            names.append(manifest_name(parts[0], parts[1]))
        else:
            dangling.append(entry)
    docs, unreadable = await read_manifests(ledger, list(dict.fromkeys(names)))
    holds = await held_recordings(ledger)
    found = [summarize(n, doc, now, holds.get((doc.call_id, doc.recording_key), ())) for n, doc in docs if doc]
    bad = {line.split(": ", 1)[0] for line in unreadable}
    dangling += [name for name, doc in docs if doc is None and name not in bad] + unreadable
    return ParticipantReport(participant_id, participant_digest(participant_id), sorted(found, key=_order), dangling)


# --- helpers -------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _order(status: RecordingStatus) -> tuple[datetime, str, str]:
    return (status.started or datetime.min.replace(tzinfo=UTC), status.call_id, status.recording_key)


async def _bounded[T](limit: int, jobs: Iterable[Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(run(j) for j in jobs)))
