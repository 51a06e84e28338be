"""``recording-archive fixity``: the fixity audit by hand, and where it stands.

``fixity run`` proves the next slice of the archive now (one timer run's worth, or ``--bytes``), from the timer's
cursor and advancing it, without charging the timer's budget; a progress bar on a terminal. ``fixity status`` says
where the walk is, how long a pass takes, and, for named calls or recordings, each chunk's last check.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from recording_pipeline.app.fixity import RUN_INTERVAL_SECONDS, Budget, FixityRun, read_cursor, run_fixity_audit
from recording_pipeline.app.verification import CheckResult
from recording_pipeline.cli.output import VERIFY_HEADERS, ProgressBar, format_bytes, format_time, render_table, to_json
from recording_pipeline.cli.storage import OperatorEdges
from recording_pipeline.cli.targets import parse_target
from recording_pipeline.core.errors import OperatorInputError
from recording_pipeline.core.fixity import FixityCursor, RecordingFixity, period_days, slice_bytes
from recording_pipeline.core.naming import FIXITY_PREFIX, fixity_name
from recording_pipeline.core.ports import StateStore
from recording_pipeline.core.settings import FixitySettings

CHECK_HEADERS = ("RECORDING", "CHUNK", "RESULT", "VERIFIED", "PASS")
RESULTS = (CheckResult.OK, CheckResult.MISMATCH, CheckResult.MISSING, CheckResult.OFFLINE)
_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``123``, ``512MiB``, ``1.5 GiB``, ``2TiB`` → bytes (argparse's type for ``--bytes``)."""
    found = _SIZE.fullmatch(text)
    unit = found.group(2).lower() if found else ""
    if not found or unit not in _UNITS or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500MiB, 2GiB)")
    return int(float(found.group(1)) * _UNITS[unit])


async def run(edges: OperatorEdges, args: argparse.Namespace) -> int:
    bytes_per_day = FixitySettings.from_env(os.environ).bytes_per_day
    if args.action == "status":
        return await _status(edges.state, args, bytes_per_day)
    slice_size = args.bytes or int(slice_bytes(bytes_per_day, RUN_INTERVAL_SECONDS))
    bar = ProgressBar("fixity", sys.stderr, enabled=not args.json)
    try:
        audit = await run_fixity_audit(
            edges.archive,
            edges.state,
            Budget(bytes_per_day, RUN_INTERVAL_SECONDS, fixed=slice_size),
            progress=bar.update,
        )
    finally:
        bar.close()
    if audit.stopped == "busy":
        print("fixity run: another run (the timer's, or someone's) holds the audit's lease; try later", file=sys.stderr)
        return 2
    print(to_json(audit.to_dict()) if args.json else run_report(audit, bytes_per_day))
    return 1 if audit.failures else 0


def run_report(audit: FixityRun, bytes_per_day: float) -> str:
    rows = [[c.result.value, c.media_blob or "-", p] for c in audit.failures for p in c.problems]
    counts = ", ".join(f"{audit.count(r)} {r.value}" for r in RESULTS)
    lines = [render_table(VERIFY_HEADERS, rows)] if rows else []
    lines.append(
        f"checked {len(audit.checked)} chunk(s), {format_bytes(audit.bytes_read)} read: {counts}; stopped: "
        f"{audit.stopped}"
    )
    assert audit.cursor is not None
    lines.append(pass_line(audit.cursor, bytes_per_day))
    return "\n".join(lines)


def pass_line(cursor: FixityCursor, bytes_per_day: float) -> str:
    """Where the walk is, and how long a whole pass takes."""
    current = cursor.current
    line = (
        f"pass {current.number} since {format_time(current.started_at)}: {current.chunks} chunk(s), "
        f"{format_bytes(current.bytes)} so far, {current.failures} failed"
    )
    done = cursor.last_pass
    days = period_days(cursor, bytes_per_day)
    if done is None or done.days is None or days is None:
        return f"{line}; how long a pass takes is known once the first ends"
    return (
        f"{line}; the last pass took {done.days:.1f} day(s) for {format_bytes(done.bytes)} ({done.failures} failed); "
        f"at {format_bytes(int(bytes_per_day))} a day a pass takes about {days:.1f} day(s)"
    )


async def _status(state: StateStore, args: argparse.Namespace, bytes_per_day: float) -> int:
    cursor = await read_cursor(state, datetime.now(UTC))
    docs = [doc for target in args.recordings for doc in await _recordings(state, target)]
    if args.json:
        print(
            to_json(
                {
                    "cursor": cursor.model_dump(mode="json", by_alias=True),
                    "periodDays": period_days(cursor, bytes_per_day),
                    "recordings": [d.model_dump(mode="json", by_alias=True) for d in docs],
                }
            )
        )
        return 0
    print(pass_line(cursor, bytes_per_day))
    rows = [
        [f"{d.call_id}/{d.recording_key}", chunk, c.result, format_time(c.verified_at), str(c.pass_number)]
        for d in docs
        for chunk, c in sorted(d.chunks.items())
    ]
    if rows:
        print(render_table(CHECK_HEADERS, rows))
    elif args.recordings:
        print("no chunk of these has been checked by the audit yet")
    return 0


async def _recordings(state: StateStore, target: str) -> list[RecordingFixity]:
    call_id, rec_key = parse_target(target)
    names = (
        [fixity_name(call_id, rec_key)]
        if rec_key
        else [n async for n in state.list_names(f"{FIXITY_PREFIX}verified/{call_id}/")]
    )
    found: list[RecordingFixity] = []
    for name in names:
        doc: Any = await state.read_json(name)
        if doc is not None:
            try:
                found.append(RecordingFixity.model_validate(doc[0]))
            except ValueError:
                raise OperatorInputError(f"{name} is not a fixity record") from None
    return found
