"""Command line ``recording-archive`` (or ``python -m recording_pipeline``): status, verify, participant, replay."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recording_pipeline.cli.operations import STATE_FILTERS
from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.settings import ArchiveSettings, QueueSettings, Settings
from recording_pipeline.edges.telemetry import configure_json_logging

if TYPE_CHECKING:
    from recording_pipeline.edges.archive import BlobArchive
    from recording_pipeline.edges.chunk_queue import StorageChunkQueue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recording-archive", description="Archive ACS call recordings into your own blob storage."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser(
        "serve", help="run function_app.py under a local Functions host with host.json's rules (needs WEBHOOK_KEY)"
    )
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=7071)

    p_replay = sub.add_parser("replay", help="feed saved or dead-lettered events through the webhook path")
    p_replay.add_argument("files", nargs="*", type=Path, help="Event Grid dead-letter blobs or saved deliveries")
    p_replay.add_argument("--poison", action="store_true", help="re-drive the jobs in <queue>-poison instead")

    p_status = sub.add_parser("status", help="recordings in the archive and their state, from their manifests")
    p_status.add_argument(
        "--since",
        type=_date,
        metavar="DATE",
        help="only recordings started at or after DATE (ISO 8601, UTC if no offset)",
    )
    p_status.add_argument(
        "--state",
        choices=STATE_FILTERS,
        help="only this recording state; 'failed': any chunk quarantined in the poison queue",
    )
    p_status.add_argument("--json", action="store_true", help="print a JSON array instead of a table")

    p_verify = sub.add_parser(
        "verify", help="re-hash archived media against its chain-of-custody records (exit 1 on any mismatch)"
    )
    p_verify.add_argument(
        "recordings", nargs="*", metavar="RECORDING", help="callId or callId/recordingKey (all if none)"
    )
    p_verify.add_argument("--json", action="store_true", help="print a JSON array instead of a report")

    p_part = sub.add_parser("participant", help="every archived recording a participant was in (from the index)")
    p_part.add_argument("participant_id", metavar="PARTICIPANT_ID", help="e.g. 8:acs:... or 4:+14255550123")
    p_part.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p_rebuild = sub.add_parser(
        "rebuild-state", help="make every manifest again from the archive's write-once records, over the state's"
    )
    p_rebuild.add_argument("--dry-run", action="store_true", help="read and report, write nothing")

    p_hold = sub.add_parser("hold", help="legal holds: place or clear one, for a case, on calls or recordings")
    p_hold.add_argument("action", choices=("place", "clear", "list"))
    p_hold.add_argument("case", nargs="?", default="", metavar="CASE", help="the case id (place, clear)")
    p_hold.add_argument("targets", nargs="*", metavar="RECORDING", help="callId or callId/recordingKey (place)")
    p_hold.add_argument("--json", action="store_true", help="print JSON (list)")

    args = parser.parse_args(argv)
    configure_json_logging()
    try:
        if args.command == "serve":
            return _serve(args.host, args.port)
        if args.command == "replay":
            return asyncio.run(_replay(args.files, args.poison))
        if args.command in ("status", "verify", "participant", "rebuild-state", "hold"):
            return asyncio.run(_operate(args))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 1


def _serve(host: str, port: int) -> int:
    """The local host is a development tool: it lives in the repository's devtools/, which is not deployed."""
    try:
        from devtools.local_host import main as local_host
    except ImportError:
        print("serve: run it from a checkout of the repository (devtools/ is not deployed)", file=sys.stderr)
        return 2
    return local_host(["--host", host, "--port", str(port)])


async def _replay(files: list[Path], poison: bool) -> int:
    from recording_pipeline.cli.replay import replay_files, replay_poison
    from recording_pipeline.runtime import Runtime

    if not files and not poison:
        print("replay: name files, or --poison", file=sys.stderr)
        return 2
    if poison:  # needs the queue and the state container only
        async with _operator_edges(queue=True) as edges:
            assert edges.queue is not None
            await edges.queue.ensure()
            redriven, kept = await replay_poison(edges.queue, edges.state)
            print(
                f"re-driven {redriven} job(s) from {edges.queue.poison_name} and _quarantine/; "
                f"{kept} unreadable left in place"
            )
            return 0 if not kept else 1
    runtime = await Runtime.start(Settings.from_env())
    try:

        def progress(done: int, total: int, name: str) -> None:
            print(f"\r[{done}/{total}] {name[-60:]:<60}", end="", file=sys.stderr, flush=True)

        summary = await replay_files(runtime, files, progress if sys.stderr.isatty() else None)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(
            f"files: {summary.files}  enqueued: {summary.enqueued}  ignored: {summary.ignored}  "
            f"external: {summary.external}  rejected: {len(summary.rejected)}  failed: {len(summary.failed_files)}"
        )
        for line in summary.rejected + summary.failed_files:
            print(f"  {line}")
        return 0 if summary.ok else 1
    finally:
        await runtime.close()


@dataclass
class _Edges:
    archive: BlobArchive  # the write-once archive container
    state: BlobArchive  # the state container beside it
    queue: StorageChunkQueue | None


@asynccontextmanager
async def _operator_edges(queue: bool) -> AsyncIterator[_Edges]:
    """The archive account's two containers (and, if asked and configured, the chunk queue): no ACS key needed."""
    from recording_pipeline.runtime import needs_identity, open_archive, open_queue, open_state

    archive_settings = ArchiveSettings.from_env(os.environ)
    queue_settings = QueueSettings.from_env(os.environ) if queue else None
    targets = [archive_settings.target] + ([queue_settings.target] if queue_settings else [])
    credential = None
    if needs_identity(*targets):
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
    edges = _Edges(
        open_archive(archive_settings, credential),
        open_state(archive_settings, credential),
        open_queue(queue_settings, credential) if queue_settings else None,
    )
    try:
        yield edges
    finally:
        for edge in (edges.archive, edges.state, edges.queue, credential):
            if edge is not None:
                await edge.close()


def _date(value: str) -> datetime:
    from recording_pipeline.cli.operations import as_utc

    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None


async def _operate(args: argparse.Namespace) -> int:
    """The operator commands on the archive account (and, for status, the poison queue's count)."""
    from recording_pipeline.core.errors import ContainerNotFoundError, OperatorInputError, StorageError

    wants_queue = args.command == "status" and _queue_configured()
    async with _operator_edges(queue=wants_queue) as edges:
        command = {
            "status": _status,
            "verify": _verify,
            "participant": _participant,
            "rebuild-state": _rebuild,
            "hold": _hold,
        }[args.command]
        try:
            return await command(edges, args)
        except OperatorInputError as exc:
            print(f"{args.command}: {exc}", file=sys.stderr)
            return 2
        except ContainerNotFoundError:
            missing = [s.container_name for s in (edges.archive, edges.state) if not await s.exists()]
            verb = "does" if len(missing) == 1 else "do"
            print(f"{args.command}: container {', '.join(map(repr, missing))} {verb} not exist", file=sys.stderr)
            return 2
        except StorageError as exc:
            print(f"{args.command}: the storage account refused: {exc}", file=sys.stderr)
            return 1


def _queue_configured() -> bool:
    try:
        QueueSettings.from_env(os.environ)
    except ConfigurationError:
        return False
    return True


async def _status(edges: _Edges, args: argparse.Namespace) -> int:
    from recording_pipeline.cli.operations import recording_status
    from recording_pipeline.cli.output import status_table, to_json

    report = await recording_status(edges.state, since=args.since, state=args.state)
    print(to_json([r.to_dict() for r in report.recordings]) if args.json else status_table(report.recordings))
    for line in report.unreadable:
        print(f"unreadable manifest: {line}", file=sys.stderr)
    queue = edges.queue
    waiting = await queue.poison_count() if queue is not None else 0
    if waiting and queue is not None:
        # Not every way into the poison queue can mark a manifest (the host poisons a job whose last attempt died).
        print(f"{waiting} job(s) wait in {queue.poison_name}: recording-archive replay --poison", file=sys.stderr)
    return 0


async def _verify(edges: _Edges, args: argparse.Namespace) -> int:
    from recording_pipeline.cli.operations import verify_recordings
    from recording_pipeline.cli.output import ProgressBar, to_json, verify_report

    bar = ProgressBar("verifying", sys.stderr)
    try:
        checks = await verify_recordings(edges.archive, edges.state, args.recordings, bar.update)
    finally:
        bar.close()
    print(to_json([c.to_dict() for c in checks]) if args.json else verify_report(checks))
    return 0 if all(c.ok for c in checks) else 1


async def _participant(edges: _Edges, args: argparse.Namespace) -> int:
    from recording_pipeline.cli.operations import participant_recordings
    from recording_pipeline.cli.output import participant_table, to_json

    report = await participant_recordings(edges.archive, edges.state, args.participant_id)
    print(to_json(report.to_dict()) if args.json else participant_table(report))
    return 0


async def _rebuild(edges: _Edges, args: argparse.Namespace) -> int:
    from recording_pipeline.cli.rebuild import rebuild_state

    await edges.state.ensure()
    report = await rebuild_state(edges.archive, edges.state, write=not args.dry_run)
    verb = "would write" if args.dry_run else "wrote"
    print(f"{verb} {len(report.manifests)} manifest(s) from the archive's records")
    for line in report.unreadable:
        print(f"  unreadable: {line}", file=sys.stderr)
    return 0 if not report.unreadable else 1


async def _hold(edges: _Edges, args: argparse.Namespace) -> int:
    from datetime import UTC

    from recording_pipeline.cli.holds import active_holds, clear_hold, place_hold
    from recording_pipeline.cli.output import to_json

    now = datetime.now(UTC)
    if args.action == "place":
        if not args.targets:
            print("hold place: name at least one CALLID or CALLID/RECORDINGKEY", file=sys.stderr)
            return 2
        await edges.state.ensure()
        hold = await place_hold(edges.archive, edges.state, args.case, args.targets, now)
        print(f"case {hold.case}: {len(hold.blobs)} blob(s) of {len(hold.recordings)} recording(s) under legal hold")
    elif args.action == "clear":
        hold, kept = await clear_hold(edges.archive, edges.state, args.case, now)
        print(f"case {hold.case}: hold cleared on {len(hold.blobs) - kept} blob(s); {kept} still held by other cases")
    else:
        holds = await active_holds(edges.state)
        if args.json:
            print(to_json([h.model_dump(mode="json", by_alias=True) for h in holds]))
        for hold in holds if not args.json else []:
            since = f"{hold.placed_at:%Y-%m-%d %H:%M}Z"
            print(f"{hold.case}  since {since}  {len(hold.blobs)} blob(s)  {', '.join(hold.targets)}")
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
