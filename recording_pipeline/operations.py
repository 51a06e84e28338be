"""What an operator asks of the archive: status, verify, participant lookups.

Everything here reads the archive and returns plain data (dataclasses with a
JSON-ready ``to_dict``); rendering is ``cli_output``'s job. Nothing writes.

- ``recording_status``: every recording's manifest, summarised (chunks, bytes,
  time left before the ACS deadline), filtered by start time and state.
- ``verify_recordings``: re-hash archived media, streamed, against the manifest's
  sha256 and size and the blob's own ``sha256`` metadata.
- ``participant_recordings``: the recordings a participant was in, from the
  participant index (one prefix listing), joined with their manifests.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from .archive import ArchiveStore
from .errors import InvalidEventError
from .manifest import chunk_key
from .naming import check_id, manifest_name, participant_digest, participant_prefix

MANIFEST_SUFFIX = "/manifest.json"
STATE_FILTERS = ("incomplete", "lost", "complete", "external", "failed")
READ_CONCURRENCY = 16
VERIFY_CONCURRENCY = 4

Progress = Callable[[int, int], None]  # (bytes done, bytes in total)
T = TypeVar("T")


class OperatorInputError(ValueError):
    """An argument the operator gave cannot name anything in the archive."""


# --- status --------------------------------------------------------------


@dataclass(frozen=True)
class RecordingStatus:
    """One recording as its manifest tells it."""

    manifest: str
    call_id: str
    recording_key: str
    recording_id: str | None
    state: str
    chunks_archived: int
    chunks_total: int | None  # lastChunkIndex + 1, once the chunk ending the session is known
    chunks_failed: int
    chunks_lost: int
    missing_chunks: tuple[int, ...]  # indexes up to the last known one without an archived copy
    total_bytes: int
    recording_start_time: str | None
    created_at: str | None
    expires_at: str | None
    seconds_left: float | None  # before the earliest ACS deadline; only while the recording is incomplete
    updated_at: str | None

    @property
    def started(self) -> datetime | None:
        return parse_time(self.recording_start_time) or parse_time(self.created_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "recordingId": self.recording_id,
            "recordingKey": self.recording_key,
            "state": self.state,
            "chunksArchived": self.chunks_archived,
            "chunksTotal": self.chunks_total,
            "chunksFailed": self.chunks_failed,
            "chunksLost": self.chunks_lost,
            "missingChunks": list(self.missing_chunks),
            "totalBytes": self.total_bytes,
            "recordingStartTime": self.recording_start_time,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "secondsLeft": None if self.seconds_left is None else round(self.seconds_left),
            "updatedAt": self.updated_at,
            "manifest": self.manifest,
        }


@dataclass(frozen=True)
class StatusReport:
    recordings: list[RecordingStatus]
    unreadable: list[str] = field(default_factory=list)  # "name: why" for manifests that could not be read


def summarize(name: str, doc: dict[str, Any], now: datetime) -> RecordingStatus:
    """A manifest → its status line. Pure; tolerant of fields a manifest may lack."""
    chunks = _chunks(doc)
    entries = [c for c in chunks.values() if isinstance(c, dict)]
    states = [str(c.get("state", "pending")) for c in entries]
    last = doc.get("lastChunkIndex")
    total = last + 1 if isinstance(last, int) else None
    indexes = [c["index"] for c in entries if isinstance(c.get("index"), int)]
    upper = total if total is not None else (max(indexes) + 1 if indexes else 0)
    missing = tuple(i for i in range(upper) if chunks.get(chunk_key(i), {}).get("state") != "archived")
    state = str(doc.get("state", "incomplete"))
    expires_at = doc.get("expiresAt")
    deadline = parse_time(expires_at)
    seconds_left = (deadline - now).total_seconds() if deadline and state == "incomplete" else None
    call_id, rec_key = _identity(name, doc)
    return RecordingStatus(
        manifest=name,
        call_id=call_id,
        recording_key=rec_key,
        recording_id=doc.get("recordingId"),
        state=state,
        chunks_archived=states.count("archived"),
        chunks_total=total,
        chunks_failed=states.count("failed"),
        chunks_lost=states.count("lost"),
        missing_chunks=missing,
        total_bytes=sum(int(c.get("size") or 0) for c in entries if c.get("state") == "archived"),
        recording_start_time=doc.get("recordingStartTime"),
        created_at=doc.get("createdAt"),
        expires_at=expires_at,
        seconds_left=seconds_left,
        updated_at=doc.get("updatedAt"),
    )


def matches(status: RecordingStatus, since: datetime | None, state: str | None) -> bool:
    if since is not None:
        started = status.started
        if started is None or started < since:
            return False
    if state == "failed":
        return status.chunks_failed > 0
    return state is None or status.state == state


async def recording_status(
    store: ArchiveStore, since: datetime | None = None, state: str | None = None, now: datetime | None = None
) -> StatusReport:
    """Every recording in the archive (oldest start first), optionally filtered."""
    if state is not None and state not in STATE_FILTERS:
        raise OperatorInputError(f"state must be one of {', '.join(STATE_FILTERS)}")
    now = now or datetime.now(UTC)
    since = as_utc(since) if since else None
    docs, unreadable = await read_manifests(store, await list_manifests(store))
    found = [summarize(name, doc, now) for name, doc in docs if doc is not None]
    selected = [s for s in found if matches(s, since, state)]
    return StatusReport(sorted(selected, key=_order), unreadable)


async def list_manifests(store: ArchiveStore, prefix: str = "") -> list[str]:
    """Names of the manifests under ``prefix``: ``{callId}/{recordingKey}/manifest.json``, never ``_...``."""
    return [
        name
        async for name in store.list_names(prefix)
        if name.endswith(MANIFEST_SUFFIX) and not name.startswith("_") and name.count("/") == 2
    ]


async def read_manifests(
    store: ArchiveStore, names: list[str]
) -> tuple[list[tuple[str, dict[str, Any] | None]], list[str]]:
    """Each name with its manifest (None if absent), in order; and the ones that could not be parsed."""
    unreadable: list[str] = []

    async def read(name: str) -> tuple[str, dict[str, Any] | None]:
        try:
            found = await store.read_json(name)
        except ValueError as exc:
            unreadable.append(f"{name}: {exc}")
            return name, None
        except HttpResponseError as exc:  # e.g. 409 BlobArchived: the lifecycle rule moved it to the archive tier
            archived = getattr(exc, "error_code", None) == "BlobArchived"
            reason = "in the archive tier: rehydrate it to read" if archived else str(exc.reason)
            unreadable.append(f"{name}: {reason}")
            return name, None
        if found is None:
            return name, None
        doc = found[0]
        if not isinstance(doc, dict):
            unreadable.append(f"{name}: not a JSON object")
            return name, None
        return name, doc

    results = await _bounded(READ_CONCURRENCY, (read(n) for n in names))
    return results, unreadable


# --- verify --------------------------------------------------------------


@dataclass
class ChunkCheck:
    index: int
    document_id: str | None
    chunk_state: str
    media_blob: str | None
    result: str = "ok"  # ok | mismatch | missing | skipped (not archived: nothing to verify)
    expected_size: int | None = None
    actual_size: int | None = None
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, result: str, problem: str) -> None:
        if self.result != "missing":
            self.result = result
        self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "documentId": self.document_id,
            "chunkState": self.chunk_state,
            "mediaBlob": self.media_blob,
            "result": self.result,
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
    state: str | None
    chunks: list[ChunkCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.result in ("ok", "skipped") for c in self.chunks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "recordingKey": self.recording_key,
            "manifest": self.manifest,
            "state": self.state,
            "ok": self.ok,
            "problems": self.problems,
            "chunks": [c.to_dict() for c in self.chunks],
        }


def parse_target(target: str) -> tuple[str, str | None]:
    """``callId`` or ``callId/recordingKey`` → (callId, recordingKey or None), both safe as names."""
    parts = target.strip().strip("/").split("/")
    if len(parts) > 2 or not parts[0]:
        raise OperatorInputError(f"{target!r}: expected callId or callId/recordingKey")
    try:
        call_id = check_id(parts[0], "callId")
        rec_key = check_id(parts[1], "recordingKey") if len(parts) == 2 else None
    except InvalidEventError as exc:
        raise OperatorInputError(f"{target!r}: {exc}") from None
    return call_id, rec_key


async def verify_recordings(
    store: ArchiveStore,
    targets: list[str] | None = None,
    progress: Progress | None = None,
    concurrency: int = VERIFY_CONCURRENCY,
) -> list[RecordingCheck]:
    """Re-hash every archived chunk of the named recordings (all, with none named)."""
    names: list[str] = []
    checks: list[RecordingCheck] = []
    for call_id, rec_key in (parse_target(t) for t in targets or []):
        if rec_key is not None:
            names.append(manifest_name(call_id, rec_key))
            continue
        under = await list_manifests(store, f"{call_id}/")
        if not under:
            checks.append(RecordingCheck(f"{call_id}/", call_id, "", None, problems=["no recording under this call"]))
        names.extend(under)
    if not targets:
        names = await list_manifests(store)
    docs, unreadable = await read_manifests(store, list(dict.fromkeys(names)))
    bad = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in unreadable}
    for name, doc in docs:
        call_id, rec_key = _identity(name, doc or {})
        check = RecordingCheck(name, call_id, rec_key, doc.get("state") if doc else None)
        if doc is None:
            check.problems.append(f"manifest unreadable: {bad[name]}" if name in bad else "no manifest")
        else:
            check.chunks = _planned_checks(doc)
        checks.append(check)

    work = [c for r in checks for c in r.chunks if c.result == "ok"]
    total = sum(c.expected_size or 0 for c in work)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(done, total), total)

    if progress is not None:
        progress(0, total)
    await _bounded(concurrency, (_verify_chunk(store, c, advance) for c in work))
    return sorted(checks, key=lambda r: (r.call_id, r.recording_key))


def _planned_checks(doc: dict[str, Any]) -> list[ChunkCheck]:
    chunks = _chunks(doc)
    planned = []
    for key, entry in sorted(chunks.items()):
        if not isinstance(entry, dict):
            continue
        index = entry.get("index")
        state = str(entry.get("state", "pending"))
        check = ChunkCheck(
            index=index if isinstance(index, int) else int(key),
            document_id=entry.get("documentId"),
            chunk_state=state,
            media_blob=entry.get("mediaBlob"),
            expected_size=entry.get("size"),
            expected_sha256=entry.get("sha256"),
        )
        if state != "archived":
            check.result = "skipped"
        elif not (check.media_blob and isinstance(check.expected_size, int) and check.expected_sha256):
            check.fail("mismatch", "manifest lacks the chunk's mediaBlob, size or sha256")
        planned.append(check)
    return planned


async def _verify_chunk(store: ArchiveStore, check: ChunkCheck, advance: Callable[[int], None]) -> None:
    assert check.media_blob is not None and check.expected_size is not None
    expected = check.expected_size
    info = await store.info(check.media_blob)
    if info is None:
        check.fail("missing", "media blob is missing")
        advance(expected)
        return
    check.actual_size = info.size
    if info.size != expected:
        check.fail("mismatch", f"blob is {info.size} bytes, manifest says {expected}")
    recorded = info.metadata.get("sha256")
    if recorded is None:
        check.fail("mismatch", "blob has no sha256 metadata")
    elif recorded != check.expected_sha256:
        check.fail("mismatch", f"blob metadata sha256 is {recorded}, manifest says {check.expected_sha256}")
    hasher = hashlib.sha256()
    read = 0
    try:
        async for piece in store.stream(check.media_blob):
            read += len(piece)
            await asyncio.to_thread(hasher.update, piece)
            advance(len(piece))
    except ResourceNotFoundError:
        check.fail("missing", "media blob disappeared while it was read")
        advance(max(0, expected - read))
        return
    advance(max(0, expected - read))
    check.actual_sha256 = hasher.hexdigest()
    if read != info.size:
        check.fail("mismatch", f"read {read} bytes of a {info.size}-byte blob")
    if check.actual_sha256 != check.expected_sha256:
        check.fail("mismatch", f"content sha256 is {check.actual_sha256}, manifest says {check.expected_sha256}")


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
    store: ArchiveStore, participant_id: str, now: datetime | None = None
) -> ParticipantReport:
    """The recordings ``participant_id`` was in: one listing of its index prefix, then their manifests."""
    if not participant_id:
        raise OperatorInputError("participant id is empty")
    now = now or datetime.now(UTC)
    prefix = participant_prefix(participant_id)
    names: list[str] = []
    dangling: list[str] = []
    async for entry in store.list_names(prefix):
        parts = entry[len(prefix) :].split("/")
        if len(parts) == 2 and all(parts):
            names.append(manifest_name(parts[0], parts[1]))
        else:
            dangling.append(entry)
    docs, unreadable = await read_manifests(store, list(dict.fromkeys(names)))
    found = [summarize(name, doc, now) for name, doc in docs if doc is not None]
    bad = {line.split(": ", 1)[0] for line in unreadable}
    dangling += [name for name, doc in docs if doc is None and name not in bad] + unreadable
    return ParticipantReport(participant_id, participant_digest(participant_id), sorted(found, key=_order), dangling)


# --- helpers -------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(doc: dict[str, Any]) -> dict[str, Any]:
    chunks = doc.get("chunks")
    return chunks if isinstance(chunks, dict) else {}


def _identity(name: str, doc: dict[str, Any]) -> tuple[str, str]:
    parts = name.split("/")
    call_id = doc.get("callId") or (parts[0] if parts else "")
    rec_key = doc.get("recordingKey") or (parts[1] if len(parts) > 1 else "")
    return str(call_id), str(rec_key)


def _order(status: RecordingStatus) -> tuple[datetime, str, str]:
    return (status.started or datetime.min.replace(tzinfo=UTC), status.call_id, status.recording_key)


async def _bounded(limit: int, jobs: Iterable[Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(run(j) for j in jobs)))
