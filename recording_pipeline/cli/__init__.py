"""Command line ``recording-archive`` (or ``python -m recording_pipeline``): status, verify, participant, replay."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.settings import Settings
from recording_pipeline.edges.telemetry import configure_json_logging

if TYPE_CHECKING:
    from recording_pipeline.runtime import Runtime

STATES = ("incomplete", "lost", "complete", "external", "failed")


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
        "--state", choices=STATES, help="only this recording state; 'failed': any chunk quarantined in the poison queue"
    )
    p_status.add_argument("--json", action="store_true", help="print a JSON array instead of a table")

    p_verify = sub.add_parser("verify", help="re-hash archived media against the manifests (exit 1 on any mismatch)")
    p_verify.add_argument(
        "recordings", nargs="*", metavar="RECORDING", help="callId or callId/recordingKey (all if none)"
    )
    p_verify.add_argument("--json", action="store_true", help="print a JSON array instead of a report")

    p_part = sub.add_parser("participant", help="every archived recording a participant was in (from the index)")
    p_part.add_argument("participant_id", metavar="PARTICIPANT_ID", help="e.g. 8:acs:... or 4:+14255550123")
    p_part.add_argument("--json", action="store_true", help="print JSON instead of a table")

    args = parser.parse_args(argv)
    configure_json_logging()
    try:
        if args.command == "serve":
            return _serve(args.host, args.port)
        settings = Settings.from_env()
        if args.command == "replay":
            return asyncio.run(_replay(settings, args.files, args.poison))
        if args.command in ("status", "verify", "participant"):
            return asyncio.run(_operate(settings, args))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 1


def _serve(host: str, port: int) -> int:
    """The local host is a development tool: it lives in the repository's devtools/, which is not deployed."""
    import os
    from pathlib import Path

    try:
        from devtools.local_host import serve
    except ImportError:
        print("serve: run it from a checkout of the repository (devtools/ is not deployed)", file=sys.stderr)
        return 2
    key = os.environ.get("WEBHOOK_KEY")
    if not key:
        raise ConfigurationError("serve needs WEBHOOK_KEY, the function key the webhook demands")
    lease = float(os.environ.get("LOCAL_HOST_LEASE_SECONDS") or 600)
    app_root = Path(__file__).resolve().parents[2]  # the folder of function_app.py and host.json
    asyncio.run(serve(app_root, dict(os.environ), host, port, key, lease))
    return 0


async def _replay(settings: Settings, files: list[Path], poison: bool) -> int:
    from recording_pipeline.cli.replay import replay_files, replay_poison
    from recording_pipeline.runtime import Runtime

    if not files and not poison:
        print("replay: name files, or --poison", file=sys.stderr)
        return 2
    runtime = await Runtime.start(settings)
    try:
        if poison:
            redriven, kept = await replay_poison(runtime.queue, runtime.store)
            print(
                f"re-driven {redriven} job(s) from {runtime.queue.poison_name} and the archive's _quarantine/; "
                f"{kept} unreadable left in place"
            )
            return 0 if not kept else 1

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


def _date(value: str) -> datetime:
    from recording_pipeline.cli.operations import as_utc

    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None


async def _operate(settings: Settings, args: argparse.Namespace) -> int:
    """The read-only operator commands. They never create the container (ensure=False)."""
    from recording_pipeline.core.errors import ContainerNotFoundError, OperatorInputError
    from recording_pipeline.runtime import Runtime

    runtime = await Runtime.start(settings, ensure=False)
    try:
        if args.command == "status":
            return await _status(runtime, args)
        if args.command == "verify":
            return await _verify(runtime, args)
        return await _participant(runtime, args)
    except OperatorInputError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    except ContainerNotFoundError:
        print(f"{args.command}: archive container {settings.archive_container!r} does not exist", file=sys.stderr)
        return 2
    finally:
        await runtime.close()


async def _status(runtime: Runtime, args: argparse.Namespace) -> int:
    from recording_pipeline.cli.operations import recording_status
    from recording_pipeline.cli.output import status_table, to_json

    report = await recording_status(runtime.store, since=args.since, state=args.state)
    print(to_json([r.to_dict() for r in report.recordings]) if args.json else status_table(report.recordings))
    for line in report.unreadable:
        print(f"unreadable manifest: {line}", file=sys.stderr)
    waiting = await runtime.queue.poison_count()
    if waiting:
        # Not every way into the poison queue can mark a manifest (the host poisons a job whose last attempt died).
        print(
            f"{waiting} job(s) wait in {runtime.queue.poison_name}: python -m recording_pipeline replay --poison",
            file=sys.stderr,
        )
    return 0


async def _verify(runtime: Runtime, args: argparse.Namespace) -> int:
    from recording_pipeline.cli.operations import verify_recordings
    from recording_pipeline.cli.output import ProgressBar, to_json, verify_report

    bar = ProgressBar("verifying", sys.stderr)
    try:
        checks = await verify_recordings(runtime.store, args.recordings, bar.update)
    finally:
        bar.close()
    print(to_json([c.to_dict() for c in checks]) if args.json else verify_report(checks))
    return 0 if all(c.ok for c in checks) else 1


async def _participant(runtime: Runtime, args: argparse.Namespace) -> int:
    from recording_pipeline.cli.operations import participant_recordings
    from recording_pipeline.cli.output import participant_table, to_json

    report = await participant_recordings(runtime.store, args.participant_id)
    print(to_json(report.to_dict()) if args.json else participant_table(report))
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
