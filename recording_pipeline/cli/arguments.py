"""The command line of ``recording-archive``: its subcommands and their arguments, and nothing they do.

Every subcommand's ``--help`` says what it does and which settings (environment variables) it reads, and every one
takes ``--verbose`` (log lines on stderr as well as in the log file: cli/logs.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recording_pipeline.cli.command_help import ARCHIVE, QUEUE, add_command, parse_date, until_date
from recording_pipeline.cli.status import STATE_FILTERS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """Every command and action, for parse_args and for the tests that hold the README to them."""
    parser = argparse.ArgumentParser(
        prog="recording-archive",
        description=(
            "Operate the ACS recording archive: what is in it, prove it, hold it, hand it over, check the deployment."
        ),
        epilog="Each command's --help says what it reads. README, 'Operating it', has examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="log lines on stderr too (always in the log file)")

    def command(
        name: str, summary: str, description: str, reads: str, failed: str | None, options: bool = True
    ) -> argparse.ArgumentParser:
        return add_command(sub, name, summary, description, reads, failed, [common] if options else [])

    p_check = command(
        "check",
        "prove the deployment: archive WORM, state, queues, ACS auth, topic, host.json (exit 1 on FAIL)",
        "Prove the deployment, one line per assumption the guarantees rest on (ok, FAIL with its fix, or not\n"
        "checkable here). Creates one canary blob under _check/ in the archive, sends one signed GET for a\n"
        "recording that cannot exist, and one test event when outbound events are on. Every missing or malformed\n"
        "setting is listed at once.",
        "every app setting in README's Configuration table, and the AzureFunctionsJobHost__ overrides of host.json",
        "a line is FAIL",
    )
    p_check.add_argument("--json", action="store_true", help="print a JSON array instead of lines")
    p_check.add_argument(
        "--app-root",
        type=Path,
        default=None,
        help="the app's folder, with host.json (default: beside the package, as deployed)",
    )

    p_replay = command(
        "replay",
        "feed saved or dead-lettered events through the webhook path",
        "Feed Event Grid dead-letter blobs or saved deliveries (either schema, array, single event or JSON lines)\n"
        "through the webhook's path, or put quarantined jobs back on the chunk queue (--poison).",
        f"files: every app setting the webhook reads (README, Configuration); --poison: {ARCHIVE}, {QUEUE}",
        "a file or a job could not be replayed",
    )
    p_replay.add_argument("files", nargs="*", type=Path, help="Event Grid dead-letter blobs or saved deliveries")
    p_replay.add_argument("--poison", action="store_true", help="re-drive the jobs in <queue>-poison instead")
    p_replay.add_argument("--deadletter", action="store_true", help="redrive what waits in DEADLETTER_CONTAINER")

    p_status = command(
        "status",
        "recordings in the archive and their state, from their manifests",
        "Every recording started between --since and --until (all without them), found in the archive's day\n"
        "index, as its manifest says: chunks archived of the total, bytes, the time left before ACS's deadline,\n"
        "legal holds; and how many jobs wait in the poison queue. Only reads.",
        f"{ARCHIVE}; {QUEUE} when set (the poison queue's length)",
        None,
    )
    p_status.add_argument(
        "--since",
        type=parse_date,
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

    p_verify = command(
        "verify",
        "re-hash archived media against its chain-of-custody records (exit 1 on any mismatch)",
        "Re-hash archived media, streamed, against each chunk's chain-of-custody record (size, sha256, block\n"
        "list, the metadata document's sha256) and the manifest. A progress bar on a terminal. Only reads.",
        ARCHIVE,
        "a chunk does not match, a blob is missing, or a named recording is not found",
    )
    p_verify.add_argument(
        "recordings",
        nargs="*",
        metavar="RECORDING",
        help="callId or callId/recordingKey (if none: all the day index names)",
    )
    p_verify.add_argument("--json", action="store_true", help="print a JSON array instead of a report (no progress)")

    p_part = command(
        "participant",
        "every archived recording a participant was in (from the index)",
        "The recordings a participant was in, from the participant index (one listing, no scan of the archive),\n"
        "for data-subject requests. Only reads.",
        ARCHIVE,
        None,
    )
    p_part.add_argument("participant_id", metavar="PARTICIPANT_ID", help="e.g. 8:acs:... or 4:+14255550123")
    p_part.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p_rebuild = command(
        "rebuild-state",
        "make every manifest again from the archive's write-once records, over the state's",
        "Make every recording's manifest again from the archive's write-once records (chain of custody,\n"
        "source-deleted, _lost/, external) and write it over the state container's. Lists the whole archive:\n"
        "a progress count on a terminal.",
        f"{ARCHIVE} (writes the state container)",
        "a record could not be read",
    )
    p_rebuild.add_argument("--dry-run", action="store_true", help="read and report, write nothing")

    p_reindex = command(
        "reindex",
        "create the index entries the archive's records imply and it lacks (after an upgrade)",
        "Walk the archive once and create every missing index entry (start day, participant, legal-hold case,\n"
        "access) from its write-once records, and the state container's quarantined jobs. Never changes a blob:\n"
        "run it once after upgrading from a version without the day index.",
        f"{ARCHIVE} (creates entries in the archive's _index/, nothing else)",
        "a record could not be read",
    )
    p_reindex.add_argument("--json", action="store_true", help="print the counts as JSON (no progress)")
    _export_command(command("export", EXPORT_SUMMARY, _EXPORT, EXPORT_READS, EXPORT_FAILED))
    hold = command("hold", "legal holds: place, clear or list the cases", _HOLD, ARCHIVE, None, options=False)
    _hold_commands(hold, common)
    fixity = command(
        "fixity",
        "the fixity audit: prove the next slice of the archive now, or say where it stands",
        _FIXITY,
        f"{ARCHIVE}, FIXITY_BYTES_PER_DAY",
        None,
        options=False,
    )
    _fixity_commands(fixity, common)
    return parser


EXPORT_SUMMARY = "hand recordings over as a BagIt bag (RFC 8493), every file checked against its chain of custody"
EXPORT_READS = (
    f"{ARCHIVE} (the state container's name only to keep the bag out of it); writes the access record and its "
    "index entries in the archive"
)
EXPORT_FAILED = "a file differs from its chain of custody (the bag is left unfinished, the file named)"
_EXPORT = (
    "Write the selected recordings as a BagIt bag: each chunk's media, metadata document, chain-of-custody and\n"
    "source-deleted records under data/, an index (index.csv, index.json), bag-info.txt (the query, who ran it,\n"
    "when, the app's version) and sha256 manifests. Every file is hashed as it is written and compared with its\n"
    "chain-of-custody record. Run the same command again to resume an interrupted export. Each finished export\n"
    "leaves an access record in the archive. Selectors narrow each other. A progress bar on a terminal."
)


def _export_command(p_export: argparse.ArgumentParser) -> None:
    p_export.add_argument(
        "--call", action="append", metavar="CALLID[/RECORDINGKEY]", help="a call or one of its recordings (repeatable)"
    )
    p_export.add_argument("--participant", metavar="PARTICIPANT_ID", help="the recordings a participant was in")
    p_export.add_argument("--case", metavar="CASE", help="the recordings a legal-hold case covered")
    p_export.add_argument("--since", type=parse_date, metavar="DATE", help="recordings started at or after DATE")
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
    p_export.add_argument("--json", action="store_true", help="print the result as JSON (no progress)")


_FIXITY = (
    "The fixity audit walks the whole archive, a slice a run (FIXITY_BYTES_PER_DAY / 24 every hour, on the\n"
    "timer), proving each chunk again as verify does. 'run' proves the next slice now, from the same cursor, without\n"
    "charging the timer's budget; 'status' says where the walk is and how long a pass takes."
)


def _fixity_commands(p_fixity: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    actions = p_fixity.add_subparsers(dest="action", required=True, metavar="ACTION")
    reads = f"{ARCHIVE}, FIXITY_BYTES_PER_DAY"
    run = add_command(
        actions,
        "run",
        "prove the next slice of the archive now (exit 1 if a chunk fails)",
        "Prove the next slice of the archive now, from the audit's cursor, and advance it: one timer\n"
        "run's worth (FIXITY_BYTES_PER_DAY / 24), or --bytes. A progress bar on a terminal. Writes the cursor and\n"
        "each chunk's last check in the state container.",
        f"{reads} (writes the state container)",
        "a chunk does not match or a blob is missing",
        [common],
    )
    run.add_argument("--bytes", type=_size, metavar="SIZE", help="read up to SIZE (e.g. 500MiB, 20GiB)")
    run.add_argument("--json", action="store_true", help="print JSON (no progress)")
    status = add_command(
        actions,
        "status",
        "where the walk is, how long a pass takes, each chunk's last check",
        "Where the audit's walk is (the pass, its chunks and bytes so far), how long the last pass took\n"
        "and how long a pass takes at FIXITY_BYTES_PER_DAY; with calls or recordings named, each of their chunks'\n"
        "last check (when, what was found, in which pass). Only reads.",
        reads,
        None,
        [common],
    )
    status.add_argument("recordings", nargs="*", metavar="RECORDING", help="callId or callId/recordingKey")
    status.add_argument("--json", action="store_true", help="print JSON")
    run.set_defaults(recordings=[])
    status.set_defaults(bytes=None)


def _size(text: str) -> int:
    from recording_pipeline.cli.fixity import parse_size

    return parse_size(text)


_HOLD = (
    "Legal holds: every blob of a call or recording kept, whatever its retention, until the case is cleared.\n"
    "The case and what it covers are kept in the state container (_holds/), the recordings it covered in the\n"
    "archive's case index (_index/cases/), and each change leaves an access record; placing and clearing need Storage\n"
    "Blob Data Owner on the archive container, and a storage that implements legal holds (Azurite does not:\n"
    "there place and clear say so and record nothing)."
)


def _hold_commands(p_hold: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    actions = p_hold.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return add_command(actions, name, summary, description, ARCHIVE, None, [common])

    place = action(
        "place",
        "hold every blob of the named recordings for a case",
        "Hold every archive blob of the named calls or recordings (media, metadata, custody and source-deleted\n"
        "records, their _lost/ records and participant index entries) for CASE. Placing it again adds what was\n"
        "archived since. Nothing is recorded unless the storage took the hold; once it has taken them all, the case\n"
        "is filed in the case index and the change leaves an access record.",
    )
    place.add_argument("case", metavar="CASE", help="the case id (letters, digits, _ = . : -)")
    place.add_argument("targets", nargs="+", metavar="RECORDING", help="callId or callId/recordingKey")
    clear = action(
        "clear",
        "close a case: release its blobs no other open case holds",
        "Close CASE: release the legal hold on its blobs that no other open case still holds, and mark the case\n"
        "cleared in the registry.",
    )
    clear.add_argument("case", metavar="CASE", help="the case id")
    listing = action(
        "list",
        "the open cases and what they cover",
        "The open legal-hold cases: since when, how many blobs, which calls or recordings; with CASE, whether it is\n"
        "open or cleared and every recording it covered, from the case index (one listing). Only reads.",
    )
    listing.add_argument(
        "case", nargs="?", default="", metavar="CASE", help="a case: every recording it covered, from the case index"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    for parser in (place, clear):
        parser.set_defaults(json=False)
    clear.set_defaults(targets=[])
    listing.set_defaults(targets=[])
