"""Export: a case's recordings handed over as a BagIt bag (core.bag), every file checked as it is written.

``select_recordings`` finds the recordings (the archive's index: a call's folder, a participant's or a case's
entries, the days between two times), ``plan_export`` reads their chain-of-custody records and lists what goes
in the bag, ``export_bag`` writes it to a BagTarget, streamed, a few files at a time. Each payload file's sha256
is computed as it passes and compared with what its custody record says (the media's size and sha256, the
metadata document's sha256); a file that differs is discarded, and the bag is not finished: the error names every
chunk that differed. The tag files come once every file is in; then the access record (who exported what, when,
the manifest's digest), created once in the archive; then ``bagit.txt``, last.

Resume: a target keeps a journal of the files it kept (core.ports.BagTarget); run the same export again, to the
same target, and it continues after them with the same export id. With a CopyTarget the storage service copies
each file from the archive (the bytes never pass through this process) and each copy is read back and hashed.

The functions take ports and return plain data: the command line (cli/export.py) adapts arguments and output,
and a console over HTTP can call the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from recording_pipeline import __version__
from recording_pipeline.app.access import record_access
from recording_pipeline.app.recording_index import (
    RecordingRef,
    recordings_of_call,
    recordings_of_case,
    recordings_of_participant,
    recordings_started,
)
from recording_pipeline.core.access import access_record
from recording_pipeline.core.bag import (
    BAG_INFO,
    BAGIT,
    BAGIT_TXT,
    INDEX_CSV,
    INDEX_JSON,
    MANIFEST,
    TAGMANIFEST,
    BagFile,
    ChunkLabel,
    ChunkRow,
    FileKind,
    bag_info_text,
    index_csv,
    index_json,
    manifest_text,
    payload_oxum,
    tagmanifest_text,
)
from recording_pipeline.core.custody import CustodyRecord, ExternalRecord, SourceDeletedRecord
from recording_pipeline.core.errors import ExportIntegrityError, InvalidEventError, OperatorInputError, StorageError
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.metadata import parse_metadata
from recording_pipeline.core.naming import LOST_PREFIX, check_id, recording_prefix
from recording_pipeline.core.ports import ArchiveStore, BagTarget, CopyTarget, ShareableArchive

EXPORT_CONCURRENCY = 4  # files written at once
PLAN_CONCURRENCY = 8  # recordings read at once
SOURCE_URL_SECONDS = 3600  # how long a server-side copy may read its source
CUSTODY, METADATA, SOURCE_DELETED, EXTERNAL = ".custody.json", ".metadata.json", ".source-deleted.json", "external.json"

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


@dataclass(frozen=True)
class ExportQuery:
    """What to export. Each selector given narrows it: the recordings of ``calls`` (callId or
    callId/recordingKey), of ``participant``, of the legal-hold ``case``, started in [``since``, ``until``)."""

    calls: tuple[str, ...] = ()
    participant: str | None = None
    case: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"call": list(self.calls), "participant": self.participant, "case": self.case}
        doc |= {"since": _iso(self.since), "until": _iso(self.until)}
        return {key: value for key, value in doc.items() if value}


@dataclass
class ExportPlan:
    files: list[BagFile] = field(default_factory=list)
    rows: list[ChunkRow] = field(default_factory=list)
    recordings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def refs(self) -> list[tuple[str, str]]:
        return [(r["callId"], r["recordingKey"]) for r in self.recordings]


@dataclass(frozen=True)
class ExportResult:
    export_id: str
    target: str
    recordings: int
    chunks: int
    files: int
    bytes: int
    resumed_files: int  # kept by an earlier run of this export
    manifest_sha256: str
    access_record: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "exportId": self.export_id,
            "target": self.target,
            "recordings": self.recordings,
            "chunks": self.chunks,
            "files": self.files,
            "bytes": self.bytes,
            "resumedFiles": self.resumed_files,
            "manifestSha256": self.manifest_sha256,
            "accessRecord": self.access_record,
        }


# --- selection and plan ----------------------------------------------------------------------------------------


async def select_recordings(archive: ArchiveStore, query: ExportQuery, now: datetime) -> list[RecordingRef]:
    """The recordings the query names, each selector one or a few prefix listings of the index."""
    found: list[set[RecordingRef]] = []
    if query.calls:
        calls: set[RecordingRef] = set()
        for call_id, rec_key in (_target(t) for t in query.calls):
            calls.update(await recordings_of_call(archive, call_id, rec_key))
        found.append(calls)
    if query.participant:
        found.append(set((await recordings_of_participant(archive, query.participant))[0]))
    if query.case:
        found.append(set((await recordings_of_case(archive, query.case))[0]))
    if not found:
        if query.since is None and query.until is None:
            raise OperatorInputError("name what to export: --call, --participant, --case, or --since/--until")
        found.append(set(await recordings_started(archive, query.since, query.until, now)))
    return sorted(set.intersection(*found))


async def plan_export(archive: ArchiveStore, refs: list[RecordingRef], query: ExportQuery) -> ExportPlan:
    """What goes in the bag: every proved chunk of the recordings (those started in the query's time, if it has
    one), its records, and the index's rows."""
    waiting = iter(refs)
    read: dict[RecordingRef, _Recording] = {}

    async def worker() -> None:
        for ref in waiting:
            read[ref] = await _read_recording(archive, ref)

    await _together([worker() for _ in range(PLAN_CONCURRENCY)])
    plan = ExportPlan()
    for recording in (read[ref] for ref in refs):
        started = recording.started
        if (query.since and (started is None or started < query.since)) or (
            query.until and (started is None or started >= query.until)
        ):
            continue
        plan.files.extend(recording.files)
        plan.rows.extend(recording.rows)
        plan.recordings.append(recording.summary())
    return plan


@dataclass
class _Recording:
    ref: RecordingRef
    files: list[BagFile] = field(default_factory=list)
    rows: list[ChunkRow] = field(default_factory=list)
    recording_id: str | None = None
    started: datetime | None = None
    external: bool = False
    last_chunk: int | None = None
    unproved: list[str] = field(default_factory=list)  # media or metadata without a custody record

    def summary(self) -> dict[str, Any]:
        archived = sorted(r.chunk_index for r in self.rows if r.state == "archived")
        lost = sorted(r.chunk_index for r in self.rows if r.state == "lost")
        complete = self.last_chunk is not None and archived == list(range(self.last_chunk + 1))
        return {
            "callId": self.ref.call_id,
            "recordingKey": self.ref.recording_key,
            "recordingId": self.recording_id,
            "recordingStartTime": _iso(self.started),
            "external": self.external,
            "complete": complete,
            "chunksArchived": archived,
            "chunksLost": lost,
            "notExported": self.unproved,
        }


async def _read_recording(archive: ArchiveStore, ref: RecordingRef) -> _Recording:
    folder = recording_prefix(ref.call_id, ref.recording_key)
    names = [name async for name in archive.list_names(folder)]
    lost = [name async for name in archive.list_names(LOST_PREFIX + folder)]
    recording = _Recording(ref)
    present = set(names)
    for name in sorted(n for n in names if n.endswith(CUSTODY)):
        custody = await _parse(archive, name, CustodyRecord.model_validate_json)
        if custody is None:
            recording.unproved.append(name)
            continue
        chunk = custody.chunk
        label = ChunkLabel(ref.call_id, ref.recording_key, chunk.chunk_index, chunk.document_id)
        recording.recording_id = recording.recording_id or chunk.recording_id
        recording.started = recording.started or chunk.recording_start_time or chunk.event_time
        if chunk.is_last_chunk:
            recording.last_chunk = chunk.chunk_index
        stem = name.removesuffix(CUSTODY)
        row = ChunkRow(
            ref.call_id,
            ref.recording_key,
            chunk.recording_id,
            chunk.recording_start_time,
            chunk.chunk_index,
            chunk.document_id,
            "archived",
            end_reason=chunk.end_reason,
            content_type=custody.content_type,
            size=custody.size,
            sha256=custody.sha256,
            archived_at=custody.verified_at,
            verification=str(custody.verification),
        )
        files = [
            BagFile(custody.media_blob, FileKind.MEDIA, label, custody.sha256, custody.size),
            BagFile(custody.metadata_blob, FileKind.METADATA, label, custody.metadata_sha256),
            BagFile(name, FileKind.CUSTODY, label),
        ]
        document = await archive.read_bytes(custody.metadata_blob)
        row.participants = parse_metadata(document[0]).participants if document else []
        if stem + SOURCE_DELETED in present:
            files.append(BagFile(stem + SOURCE_DELETED, FileKind.SOURCE_DELETED, label))
            gone = await _parse(archive, stem + SOURCE_DELETED, SourceDeletedRecord.model_validate_json)
            row.source_deleted_at = gone.deleted_at if gone else None
        row.files = {f.kind.value: f.path for f in files}
        recording.files.extend(files)
        recording.rows.append(row)
    proved = {f.blob for f in recording.files}
    recording.unproved += [n for n in names if n not in proved and n.rsplit("/", 1)[-1][:5].isdigit()]
    for name in lost:
        job = await _parse(archive, name, _lost_job)
        if job is None:
            continue
        label = ChunkLabel(ref.call_id, ref.recording_key, job.chunk_index, job.document_id)
        lost_file = BagFile(name, FileKind.LOST, label)
        recording.files.append(lost_file)
        recording.started = recording.started or job.recording_start_time or job.event_time
        recording.rows.append(
            ChunkRow(
                ref.call_id,
                ref.recording_key,
                job.recording_id,
                job.recording_start_time,
                job.chunk_index,
                job.document_id,
                "lost",
                end_reason=job.end_reason,
                files={FileKind.LOST.value: lost_file.path},
            )
        )
    external = folder + EXTERNAL
    if external in present:
        record = await _parse(archive, external, ExternalRecord.model_validate_json)
        recording.files.append(BagFile(external, FileKind.EXTERNAL))
        recording.external = True
        recording.started = recording.started or (record.received_at if record else None)
    recording.rows.sort(key=lambda r: r.chunk_index)
    return recording


# --- writing the bag -------------------------------------------------------------------------------------------


async def export_bag(
    archive: ArchiveStore,
    plan: ExportPlan,
    target: BagTarget,
    *,
    query: ExportQuery,
    actor: str,
    archive_url: str,
    now: datetime | None = None,
    progress: Progress | None = None,
    concurrency: int = EXPORT_CONCURRENCY,
) -> ExportResult:
    """Write ``plan`` to ``target`` as a finished bag, resuming an unfinished one of the same query; leave the
    access record. ExportIntegrityError (the bag left unfinished) if any file differs from its custody record."""
    if not plan.files:
        raise OperatorInputError("nothing archived matches: no bag written")
    now = now or datetime.now(UTC)
    proposed = {
        "exportId": uuid.uuid4().hex,
        "query": query.to_dict(),
        "actor": actor,
        "startedAt": now.isoformat(),
        "target": target.description,
    }
    header, kept = await target.open(proposed)
    resumed = len([f for f in plan.files if f.path in kept])
    todo = [f for f in plan.files if f.path not in kept]
    total, done = sum(f.size or 0 for f in todo), 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(done, total), total)

    advance(0)
    failures: list[str] = []
    waiting = iter(todo)

    async def worker() -> None:  # a few workers over one iterator: memory does not grow with the case
        for bag_file in waiting:
            problem = await _transfer(archive, target, bag_file, kept, advance)
            if problem is not None:
                failures.append(f"{bag_file.chunk or bag_file.blob}: {problem}")

    await _together([worker() for _ in range(concurrency)])
    if failures:
        raise ExportIntegrityError(sorted(failures))
    return await _finish(archive, plan, target, header, kept, resumed, actor=actor, archive_url=archive_url)


async def _transfer(
    archive: ArchiveStore,
    target: BagTarget,
    bag_file: BagFile,
    kept: dict[str, tuple[str, int]],
    advance: Callable[[int], None],
) -> str | None:
    """One file into the bag, hashed on its way; what differs from its custody record, or None once kept."""
    hasher, size = hashlib.sha256(), 0

    async def hashed(pieces: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        nonlocal size
        async for piece in pieces:
            await asyncio.to_thread(hasher.update, piece)
            size += len(piece)
            advance(len(piece))
            yield piece

    try:
        if isinstance(target, CopyTarget):
            if not isinstance(archive, ShareableArchive):
                raise OperatorInputError("this archive cannot give a copy target a URL to copy from")
            await target.copy(bag_file.path, await archive.read_url(bag_file.blob, SOURCE_URL_SECONDS))
            async for _piece in hashed(target.read_back(bag_file.path)):
                pass
        else:
            await target.write(bag_file.path, hashed(archive.stream(bag_file.blob)))
    except StorageError as exc:
        if exc.status != 404:
            raise
        await target.discard(bag_file.path)
        return f"{bag_file.kind} blob {bag_file.blob} is missing from the archive"
    digest = hasher.hexdigest()
    problem = None
    if bag_file.size is not None and size != bag_file.size:
        problem = f"{bag_file.kind} is {size} bytes, its chain-of-custody record says {bag_file.size}"
    elif bag_file.sha256 is not None and digest != bag_file.sha256:
        problem = f"{bag_file.kind} sha256 is {digest}, its chain-of-custody record says {bag_file.sha256}"
    if problem is not None:
        await target.discard(bag_file.path)
        return problem
    # Kept whole even if the export is stopped meanwhile: what the target's journal says is kept, is, by the
    # time the export has ended (a stop between the two would leave a checked file to be copied again).
    keeping = asyncio.ensure_future(target.keep(bag_file.path, digest, size))
    try:
        await asyncio.shield(keeping)
    except asyncio.CancelledError:
        await keeping
        raise
    kept[bag_file.path] = (digest, size)
    return None


async def _finish(
    archive: ArchiveStore,
    plan: ExportPlan,
    target: BagTarget,
    header: dict[str, Any],
    kept: dict[str, tuple[str, int]],
    resumed: int,
    *,
    actor: str,
    archive_url: str,
) -> ExportResult:
    """The tag files, the access record, then bagit.txt. All from the header and what was kept, so a resumed
    export that finishes writes the same bytes as one that was never interrupted."""
    paths = [f.path for f in plan.files]
    manifest = manifest_text({path: kept[path][0] for path in paths})
    total = sum(kept[path][1] for path in paths)
    started = datetime.fromisoformat(header["startedAt"])
    export_id = header["exportId"]
    index_header = {"exportId": export_id, "query": header["query"], "exportedBy": header["actor"]}
    tags = {
        BAGIT: BAGIT_TXT,
        BAG_INFO: bag_info_text(
            [
                ("Bag-Software-Agent", f"recording-archive {__version__}"),
                ("Bagging-Date", started.date().isoformat()),
                ("External-Identifier", export_id),
                ("External-Description", f"Call recordings exported from {archive_url}"),
                ("Export-Query", json.dumps(header["query"], sort_keys=True)),
                ("Exported-By", header["actor"]),
                ("Exported-At", started.isoformat()),
                ("Exported-To", header["target"]),
                ("App-Version", __version__),
                ("Recordings", str(len(plan.recordings))),
                ("Payload-Oxum", payload_oxum(kept[path][1] for path in paths)),
            ]
        ),
        MANIFEST: manifest,
        INDEX_CSV: index_csv(plan.rows),
        INDEX_JSON: index_json(index_header, plan.rows, plan.recordings),
    }
    tagmanifest = tagmanifest_text(tags)
    for name, data in [*tags.items(), (TAGMANIFEST, tagmanifest)]:
        if name != BAGIT:
            await target.write_tag(name, data)
    manifest_sha256 = hashlib.sha256(manifest).hexdigest()
    record = access_record(
        "export",
        actor,
        started,
        plan.refs,
        __version__,
        record_id=export_id,
        query=header["query"],
        details={
            "target": header["target"],
            "manifestSha256": manifest_sha256,
            "tagmanifestSha256": hashlib.sha256(tagmanifest).hexdigest(),
            "payloadOxum": payload_oxum(kept[path][1] for path in paths),
            "chunks": len([r for r in plan.rows if r.state == "archived"]),
        },
    )
    name = await record_access(archive, record)
    await target.finish(BAGIT_TXT)
    return ExportResult(
        export_id,
        header["target"],
        len(plan.recordings),
        len([r for r in plan.rows if r.state == "archived"]),
        len(paths),
        total,
        resumed,
        manifest_sha256,
        name,
    )


async def _together(workers: list[Coroutine[Any, Any, None]]) -> None:
    """Run the workers; the first that fails stops the others (nothing goes on writing after the export has
    ended), and its exception, as it was, is the one raised."""
    tasks = [asyncio.create_task(worker) for worker in workers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            raise failure


def _lost_job(data: bytes) -> RecordingChunk:
    return decode_job(json.dumps(json.loads(data)["job"]))


async def _parse[R](archive: ArchiveStore, name: str, parse: Callable[[bytes], R]) -> R | None:
    found = await archive.read_bytes(name)
    if found is None:
        return None
    try:
        return parse(found[0])
    except (ValidationError, ValueError, KeyError, TypeError):
        return None


def _target(value: str) -> tuple[str, str | None]:
    """``callId`` or ``callId/recordingKey``, both checked as names."""
    call_id, _, rec_key = value.strip().strip("/").partition("/")
    try:
        return check_id(call_id, "callId"), check_id(rec_key, "recordingKey") if rec_key else None
    except InvalidEventError as exc:
        raise OperatorInputError(f"{value!r}: {exc}") from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
