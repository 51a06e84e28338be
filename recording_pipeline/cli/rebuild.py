"""Rebuild the state container's manifests from the archive's write-once records alone.

The manifests are a view; the evidence is in the archive: a chain-of-custody
record per archived chunk (its whole identity, size, sha256, blobs), a source-
deleted record when ACS's copy went, a ``_lost/`` record per chunk ACS no longer
had, an external record per bring-your-own-storage recording. From these, each
recording's manifest is made again and written over the one in the state
container. What only the state ever knew — a chunk waiting to be tried again, a
quarantined one — is not in the archive, and a rebuilt manifest does not show it:
the queue and ``_quarantine/`` still hold those jobs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from recording_pipeline.cli.output import ProgressBar
from recording_pipeline.cli.storage import OperatorEdges
from recording_pipeline.core.custody import CustodyRecord, ExternalRecord, SourceDeletedRecord
from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.jobs import decode_job
from recording_pipeline.core.naming import LOST_PREFIX, manifest_name
from recording_pipeline.core.ports import ArchiveStore, StateStore
from recording_pipeline.core.state import (
    ChunkOf,
    ChunkState,
    ChunkUpdate,
    Manifest,
    record_chunk,
)

CUSTODY = ".custody.json"
SOURCE_DELETED = ".source-deleted.json"
EXTERNAL = "/external.json"


@dataclass
class RebuildReport:
    manifests: dict[str, Manifest] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # "name: why"
    written: int = 0


async def rebuild_state(
    archive: ArchiveStore, state: StateStore, write: bool = True, progress: Callable[[int], None] | None = None
) -> RebuildReport:
    """Every recording's manifest from the archive's records; written over the state's unless ``write`` is False.
    ``progress`` is told how many blobs were listed so far."""
    report = RebuildReport()
    deleted: dict[str, SourceDeletedRecord] = {}
    custody: list[CustodyRecord] = []
    listed = 0
    async for name in archive.list_names(""):
        listed += 1
        if progress is not None:
            progress(listed)
        if name.endswith(CUSTODY):
            record = await _read(archive, name, CustodyRecord, report)
            if record is not None:
                custody.append(record)
        elif name.endswith(SOURCE_DELETED):
            gone = await _read(archive, name, SourceDeletedRecord, report)
            if gone is not None:
                deleted[name.removesuffix(SOURCE_DELETED)] = gone
        elif name.endswith(EXTERNAL) and name.count("/") == 2:
            external = await _read(archive, name, ExternalRecord, report)
            if external is not None:
                report.manifests[manifest_name(external.call_id, external.recording_key)] = external.manifest()
        elif name.startswith(LOST_PREFIX) and name.endswith(".json"):
            await _lost(archive, name, report)
    for record in custody:
        chunk = record.chunk
        stem = record.media_blob.rsplit(".", 1)[0]
        gone = deleted.get(stem)
        update = record.archived_update(gone.deleted_at if gone else None, not record.source_proved_whole)
        _apply(report, manifest_name(chunk.call_id, chunk.recording_key), chunk, update, record.verified_at)
    if write:
        for name, doc in sorted(report.manifests.items()):
            await state.update_json(name, _replace_with(doc))
            report.written += 1
    return report


def _replace_with(doc: Manifest) -> Callable[[object | None], object]:
    return lambda _current: doc.to_json()


async def _lost(archive: ArchiveStore, name: str, report: RebuildReport) -> None:
    found = await archive.read_bytes(name)
    if found is None:
        return
    try:
        doc = json.loads(found[0])
        job = decode_job(json.dumps(doc["job"]))
        detected = datetime.fromisoformat(doc["detectedAt"])
    except (ValueError, KeyError, TypeError, InvalidEventError) as exc:
        report.unreadable.append(f"{name}: not a lost record ({type(exc).__name__})")
        return
    update = ChunkUpdate(ChunkState.LOST, lost_at=detected, last_error=str(doc.get("reason") or ""))
    _apply(report, manifest_name(job.call_id, job.recording_key), job, update, detected)


def _apply(report: RebuildReport, name: str, chunk: ChunkOf, update: ChunkUpdate, when: datetime) -> None:
    current = report.manifests.get(name)
    manifest = record_chunk(current, chunk, when, update)
    if current is None or manifest.created_at is None or (current.created_at and when < current.created_at):
        manifest.created_at = when if current is None else min(when, current.created_at or when)
    manifest.updated_at = max(when, (current.updated_at if current else None) or when)
    report.manifests[name] = manifest


async def _read[R: (CustodyRecord, SourceDeletedRecord, ExternalRecord)](
    archive: ArchiveStore, name: str, model: type[R], report: RebuildReport
) -> R | None:
    found = await archive.read_bytes(name)
    if found is None:
        return None
    try:
        return model.model_validate_json(found[0])
    except ValidationError:
        report.unreadable.append(f"{name}: not a {model.__name__}")
        return None


async def run(edges: OperatorEdges, args: argparse.Namespace) -> int:
    await edges.state.ensure()
    bar = ProgressBar("rebuild-state", sys.stderr)
    try:
        report = await rebuild_state(
            edges.archive, edges.state, write=not args.dry_run, progress=lambda n: bar.note(f"{n} blob(s) listed")
        )
    finally:
        bar.close()
    verb = "would write" if args.dry_run else "wrote"
    print(f"{verb} {len(report.manifests)} manifest(s) from the archive's records")
    for line in report.unreadable:
        print(f"  unreadable: {line}", file=sys.stderr)
    return 0 if not report.unreadable else 1
