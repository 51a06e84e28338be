"""``recording-archive export``: recordings handed over as a BagIt bag (app.export), to a folder, a .zip file, or
another container of the archive's account by server-side copy. This module only turns arguments into a query
and a target, and the result into lines or JSON; what the bag holds and how each file is checked is app.export's.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from recording_pipeline.app.export import ExportQuery, export_bag, plan_export, select_recordings
from recording_pipeline.cli.output import ProgressBar, format_bytes, to_json
from recording_pipeline.cli.storage import OperatorEdges, operator_name
from recording_pipeline.core.errors import ExportIntegrityError, OperatorInputError
from recording_pipeline.core.ports import BagTarget
from recording_pipeline.edges.bag_container import ContainerBag
from recording_pipeline.edges.bag_folder import FolderBag, ZipBag


def bag_target(edges: OperatorEdges, to: Path | None, to_container: str | None) -> BagTarget:
    if to is not None:
        return ZipBag(to) if to.suffix.lower() == ".zip" else FolderBag(to)
    assert to_container is not None  # argparse requires one of the two
    container, _, prefix = to_container.strip("/").partition("/")
    if container in (edges.archive.container_name, edges.state.container_name):
        raise OperatorInputError(f"--to-container {container}: the bag goes to a container of its own, not {container}")
    return ContainerBag(edges.archive.sibling(container), prefix)


async def run(edges: OperatorEdges, args: argparse.Namespace) -> int:
    query = ExportQuery(tuple(args.call or ()), args.participant, args.case, args.since, args.until)
    target = bag_target(edges, args.to, args.to_container)
    now = datetime.now(UTC)
    plan = await plan_export(edges.archive, await select_recordings(edges.archive, query, now), query)
    bar = ProgressBar("exporting", sys.stderr, enabled=not args.json)
    try:
        try:
            result = await export_bag(
                edges.archive,
                plan,
                target,
                query=query,
                actor=args.by or operator_name(),
                archive_url=edges.archive.url,
                now=now,
                progress=bar.update,
            )
        finally:
            bar.close()  # its line ended before anything else is printed
    except ExportIntegrityError as exc:
        print(f"export: the bag is not finished: {len(exc.problems)} file(s) differ from their chain of custody:")
        for problem in exc.problems:
            print(f"  {problem}")
        return 1
    except OSError as exc:  # the bag's folder or .zip on this machine: a full disk, a path not ours to write
        print(f"export: the bag could not be written: {exc}; run the same command again to resume", file=sys.stderr)
        return 2
    if args.json:
        print(to_json(result.to_dict()))
        return 0
    resumed = f", {result.resumed_files} kept from the interrupted run" if result.resumed_files else ""
    print(
        f"exported {result.recordings} recording(s), {result.chunks} chunk(s): {result.files} file(s), "
        f"{format_bytes(result.bytes)}, to {result.target}{resumed}"
    )
    print(f"export {result.export_id}: manifest-sha256.txt has sha256 {result.manifest_sha256}")
    print(f"access record: {result.access_record}")
    return 0
