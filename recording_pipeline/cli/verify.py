"""``recording-archive verify``: re-hash archived media, streamed, against each chunk's chain-of-custody record
(size, sha256, block list, the metadata document's sha256) and the manifest; exit 1 on any mismatch or missing
blob. It only reads."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from recording_pipeline.app.recording_index import recordings_started
from recording_pipeline.app.verification import CheckResult, ChunkCheck, verify_chunk
from recording_pipeline.cli.manifests import bounded, list_manifests, read_manifests
from recording_pipeline.cli.output import VERIFY_HEADERS, ProgressBar, format_bytes, render_table, to_json
from recording_pipeline.cli.storage import OperatorEdges
from recording_pipeline.cli.targets import parse_target
from recording_pipeline.core.naming import chunk_stem, manifest_name
from recording_pipeline.core.ports import ArchiveStore, StateStore
from recording_pipeline.core.state import ChunkState, Manifest, RecordingState

VERIFY_CONCURRENCY = 4
NOT_FOUND = "not found"
UNREADABLE = "unreadable"

Progress = Callable[[int, int], None]  # (bytes done, bytes in total)


@dataclass
class RecordingCheck:
    manifest: str
    call_id: str
    recording_key: str
    state: RecordingState | None
    chunks: list[ChunkCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    found: str = "found"  # or NOT_FOUND (no manifest, no recording under the call), UNREADABLE (its manifest)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.result in (CheckResult.OK, CheckResult.SKIPPED) for c in self.chunks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "recordingKey": self.recording_key,
            "manifest": self.manifest,
            "state": self.state.value if self.state else None,
            "found": self.found,
            "ok": self.ok,
            "problems": self.problems,
            "chunks": [c.to_dict() for c in self.chunks],
        }


async def verify_recordings(
    archive: ArchiveStore,
    state: StateStore,
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
        under = await list_manifests(state, f"{call_id}/")
        if not under:
            checks.append(
                RecordingCheck(
                    f"{call_id}/", call_id, "", None, problems=["no recording under this call"], found=NOT_FOUND
                )
            )
        names.extend(under)
    if not targets:  # every recording the day index names: never a walk of the state container
        names = [ref.manifest for ref in await recordings_started(archive, None, None, datetime.now(UTC))]
    docs, unreadable = await read_manifests(state, list(dict.fromkeys(names)))
    bad = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in unreadable}
    for name, doc in docs:
        call_id, rec_key, *_rest = [*name.split("/"), "", ""]
        check = RecordingCheck(name, call_id, rec_key, doc.state if doc else None)
        if doc is None:
            check.found = UNREADABLE if name in bad else NOT_FOUND
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
    await bounded(concurrency, (verify_chunk(archive, c, stems[id(c)], advance) for c in work))
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


def verify_report(checks: Sequence[RecordingCheck]) -> str:
    """The problems, one row each, then a summary line that counts every row's kind."""
    rows: list[list[str]] = []
    for recording in checks:
        rows.extend([recording.found, recording.manifest, problem] for problem in recording.problems)
        for chunk in recording.chunks:
            if chunk.result not in (CheckResult.OK, CheckResult.SKIPPED):
                rows.extend([chunk.result.value, chunk.media_blob or "-", problem] for problem in chunk.problems)
    chunks = [c for r in checks for c in r.chunks]
    counted = {r: sum(1 for c in chunks if c.result is r) for r in CheckResult}
    verified = len(chunks) - counted[CheckResult.SKIPPED]
    size = sum(c.actual_size or 0 for c in chunks if c.result is not CheckResult.SKIPPED)
    skipped = counted[CheckResult.SKIPPED]
    found = [r for r in checks if r.found == "found"]
    summary = (
        f"verified {verified} chunk(s), {format_bytes(size)}, in {len(found)} recording(s): "
        f"{counted[CheckResult.OK]} ok, {counted[CheckResult.MISMATCH]} mismatch, "
        f"{counted[CheckResult.MISSING]} missing, {skipped} not archived (not checked)"
    )
    if counted[CheckResult.OFFLINE]:
        summary += f", {counted[CheckResult.OFFLINE]} in the archive tier (not re-hashed)"
    for kind in (NOT_FOUND, UNREADABLE):
        count = sum(1 for r in checks if r.found == kind)
        if count:
            summary += f"; {count} recording(s) {kind}"
    return "\n".join([render_table(VERIFY_HEADERS, rows), summary] if rows else [summary])


async def run(edges: OperatorEdges, args: argparse.Namespace) -> int:
    bar = ProgressBar("verifying", sys.stderr, enabled=not args.json)
    try:
        checks = await verify_recordings(edges.archive, edges.state, args.recordings, bar.update)
    finally:
        bar.close()
    print(to_json([c.to_dict() for c in checks]) if args.json else verify_report(checks))
    return 0 if all(c.ok for c in checks) else 1
