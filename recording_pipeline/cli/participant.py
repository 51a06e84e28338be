"""``recording-archive participant``: the recordings a participant was in, from the participant index (one prefix
listing, no scan of the archive), joined with their manifests; for data-subject requests. It only reads."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from recording_pipeline.app.recording_index import RecordingRef, recordings_of_participant
from recording_pipeline.cli.holds import held_recordings
from recording_pipeline.cli.manifests import read_manifests
from recording_pipeline.cli.output import PARTICIPANT_HEADERS, format_bytes, format_time, render_table, to_json
from recording_pipeline.cli.status import RecordingStatus, chunks_cell, order, summarize
from recording_pipeline.cli.storage import OperatorEdges
from recording_pipeline.core.errors import OperatorInputError
from recording_pipeline.core.naming import participant_digest
from recording_pipeline.core.ports import ArchiveStore, StateStore


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
    archive: ArchiveStore, state: StateStore, participant_id: str, now: datetime | None = None
) -> ParticipantReport:
    """The recordings ``participant_id`` was in: one listing of its index prefix, then their manifests."""
    if not participant_id:
        raise OperatorInputError("participant id is empty")
    refs, odd = await recordings_of_participant(archive, participant_id)
    found, dangling = await indexed_status(state, refs, now or datetime.now(UTC))
    return ParticipantReport(participant_id, participant_digest(participant_id), found, odd + dangling)


async def indexed_status(
    state: StateStore, refs: list[RecordingRef], now: datetime
) -> tuple[list[RecordingStatus], list[str]]:
    """The recordings an index named, as their manifests tell them (oldest first), and those without a readable
    manifest (name, or "name: why")."""
    docs, unreadable = await read_manifests(state, [ref.manifest for ref in refs])
    holds = await held_recordings(state)
    found = [summarize(n, doc, now, holds.get((doc.call_id, doc.recording_key), ())) for n, doc in docs if doc]
    bad = {line.split(": ", 1)[0] for line in unreadable}
    dangling = [name for name, doc in docs if doc is None and name not in bad] + unreadable
    return sorted(found, key=order), dangling


def participant_table(report: ParticipantReport) -> str:
    lines = []
    if report.recordings:
        rows = [
            [
                r.call_id,
                r.recording_key,
                r.state,
                format_time(r.recording_start_time or r.created_at),
                chunks_cell(r),
                format_bytes(r.total_bytes),
                ", ".join(r.holds) or "-",
            ]
            for r in report.recordings
        ]
        lines.append(render_table(PARTICIPANT_HEADERS, rows, right=(4, 5)))
    else:
        lines.append("no archived recordings for this participant")
    lines.extend(f"index entry without a manifest: {name}" for name in report.dangling)
    return "\n".join(lines)


async def run(edges: OperatorEdges, args: argparse.Namespace) -> int:
    report = await participant_recordings(edges.archive, edges.state, args.participant_id)
    print(to_json(report.to_dict()) if args.json else participant_table(report))
    return 0
