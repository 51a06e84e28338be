"""``recording-archive reindex``: create every index entry the archive's records imply and the archive lacks
(app.reindex). Only creates, in the archive's ``_index/``; never changes a blob. Run it once after upgrading
from a version without the day index, or whenever ``status`` names an index entry without a manifest."""

from __future__ import annotations

import argparse
import sys

from recording_pipeline.app.reindex import reindex
from recording_pipeline.cli.output import ProgressBar, to_json
from recording_pipeline.cli.storage import OperatorEdges

KINDS = ("day", "participant", "case", "access")


async def run(edges: OperatorEdges, args: argparse.Namespace) -> int:
    bar = ProgressBar("reindex", sys.stderr, enabled=not args.json)
    try:
        report = await reindex(edges.archive, edges.state, progress=lambda n: bar.note(f"{n} recording(s) reached"))
    finally:
        bar.close()
    if args.json:
        created = {kind: report.created[kind] for kind in KINDS}
        print(to_json({"recordings": report.recordings, "created": created, "unreadable": report.unreadable}))
    else:
        made = ", ".join(f"{report.created[kind]} {kind}" for kind in KINDS)
        print(
            f"read {report.recordings} recording(s) in the archive; created index entries: {made} (the rest were there)"
        )
        for line in report.unreadable:
            print(f"  unreadable: {line}", file=sys.stderr)
    return 0 if not report.unreadable else 1
