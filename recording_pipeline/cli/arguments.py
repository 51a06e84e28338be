"""The command line of ``recording-archive``: its subcommands and their arguments, and nothing they do."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from recording_pipeline.cli.status import STATE_FILTERS, as_utc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="recording-archive", description="Archive ACS call recordings into your own blob storage."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_check = sub.add_parser(
        "check", help="prove the deployment: archive WORM, state, queues, ACS auth, topic, host.json (exit 1 on FAIL)"
    )
    p_check.add_argument("--json", action="store_true", help="print a JSON array instead of lines")
    p_check.add_argument(
        "--app-root",
        type=Path,
        default=None,
        help="the app's folder, with host.json (default: beside the package, as deployed)",
    )

    p_replay = sub.add_parser("replay", help="feed saved or dead-lettered events through the webhook path")
    p_replay.add_argument("files", nargs="*", type=Path, help="Event Grid dead-letter blobs or saved deliveries")
    p_replay.add_argument("--poison", action="store_true", help="re-drive the jobs in <queue>-poison instead")
    p_replay.add_argument("--deadletter", action="store_true", help="redrive what waits in DEADLETTER_CONTAINER")

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
    return parser.parse_args(argv)


def _date(value: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None
