"""The command line of ``recording-archive``: its subcommands and their arguments, and nothing they do."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
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

    p_status = sub.add_parser("status", help="recordings in the archive and their state, from their manifests")
    p_status.add_argument(
        "--since",
        type=_date,
        metavar="DATE",
        help="only recordings started at or after DATE (ISO 8601, UTC if no offset)",
    )
    p_status.add_argument(
        "--until",
        type=until_date,
        metavar="DATE",
        help="only recordings started before DATE (a date alone: until the end of that day)",
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

    p_export = sub.add_parser(
        "export",
        help="hand recordings over as a BagIt bag (RFC 8493), every file checked against its chain of custody",
        description=(
            "Write the selected recordings as a BagIt bag: each chunk's media, metadata document, chain-of-custody "
            "and source-deleted records under data/, an index (index.csv, index.json), bag-info.txt (the query, "
            "who ran it, when, the app's version) and sha256 manifests. Every file is hashed as it is written and "
            "compared with its chain-of-custody record; one that differs leaves the bag unfinished (exit 1) and is "
            "named. Run the same command again to resume an interrupted export. Each finished export leaves an "
            "access record in the archive. Selectors narrow each other. Reads ARCHIVE_STORAGE_CONNECTION_STRING or "
            "ARCHIVE_STORAGE_ACCOUNT_URL and ARCHIVE_CONTAINER (and ARCHIVE_STATE_CONTAINER, only to keep the bag "
            "out of it); creates the access record and its index entries in the archive."
        ),
    )
    p_export.add_argument(
        "--call", action="append", metavar="CALLID[/RECORDINGKEY]", help="a call or one of its recordings (repeatable)"
    )
    p_export.add_argument("--participant", metavar="PARTICIPANT_ID", help="the recordings a participant was in")
    p_export.add_argument("--case", metavar="CASE", help="the recordings a legal-hold case covered")
    p_export.add_argument("--since", type=_date, metavar="DATE", help="recordings started at or after DATE")
    p_export.add_argument(
        "--until", type=until_date, metavar="DATE", help="recordings started before DATE (a date alone: its end)"
    )
    where = p_export.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", type=Path, metavar="PATH", help="a new folder, or a file ending in .zip")
    where.add_argument(
        "--to-container",
        metavar="CONTAINER/FOLDER",
        help="a folder in another container of the archive's account: the storage service copies the files",
    )
    p_export.add_argument("--by", metavar="NAME", help="who the access record names (default: login@host)")
    p_export.add_argument("--json", action="store_true", help="print the result as JSON; no progress bar")

    sub.add_parser(
        "reindex",
        help="create the index entries the archive's records imply and it lacks (after an upgrade)",
        description=(
            "Walk the archive once and create every missing index entry (start day, participant, legal-hold case, "
            "access) from its write-once records, and the state container's quarantined jobs; never changes a "
            "blob. Reads ARCHIVE_STORAGE_CONNECTION_STRING or ARCHIVE_STORAGE_ACCOUNT_URL, ARCHIVE_CONTAINER, "
            "ARCHIVE_STATE_CONTAINER; writes the archive's _index/ (create only)."
        ),
    )

    p_hold = sub.add_parser("hold", help="legal holds: place or clear one, for a case, on calls or recordings")
    p_hold.add_argument("action", choices=("place", "clear", "list"))
    p_hold.add_argument(
        "case",
        nargs="?",
        default="",
        metavar="CASE",
        help="the case id (place, clear; list: its recordings, from the case index)",
    )
    p_hold.add_argument("targets", nargs="*", metavar="RECORDING", help="callId or callId/recordingKey (place)")
    p_hold.add_argument("--json", action="store_true", help="print JSON (list)")
    return parser.parse_args(argv)


def until_date(value: str) -> datetime:
    """An upper bound: a time is exclusive; a date alone takes in the whole of that day (UTC)."""
    parsed = _date(value)
    return parsed + timedelta(days=1) if len(value.strip()) == len("YYYY-MM-DD") else parsed


def _date(value: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None
