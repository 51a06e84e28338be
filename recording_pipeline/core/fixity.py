"""The fixity audit's plan: where the walk of the archive is, how much it may read now, and what it found. Pure.

The audit walks the archive's chain-of-custody records in name order (the order a listing returns them), one
bounded slice per run, and proves each chunk again (app/fixity). Between runs its position is a cursor in the state
container: the listing page it is in (the service's continuation marker, which encodes a position in the name
space and does not expire) and the last record it handled there. A run that dies loses at most what it did since
it last saved the cursor; the next run lists that page again and skips what was done.

How much a run may read is a budget of bytes that accrues with time at ``FIXITY_BYTES_PER_DAY`` (a token bucket),
capped at a few runs' worth, so a timer that missed runs does not make them all up at once. A chunk is taken
whenever the budget is positive, even if it is larger (a 4-hour chunk is ~2 GB): the budget goes below zero and
the next runs repay it, so on average the audit reads what the setting says. When the walk reaches the end of the
listing, the pass is complete: its length in time and bytes is the period the audit reports, and the next run
starts the next pass from the first name.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from recording_pipeline.core.state import Instant

SCHEMA = 1
CUSTODY_SUFFIX = ".custody.json"
DAY_SECONDS = 24 * 60 * 60
CATCH_UP_RUNS = 3  # the budget never holds more than this many runs' worth


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")


class PassSummary(_Model):
    number: int
    started_at: Instant
    finished_at: Instant | None = None
    chunks: int = 0
    bytes: int = 0
    failures: int = 0

    @property
    def days(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() / DAY_SECONDS


class FixityCursor(_Model):
    """The audit's position, its budget, and its passes: ``_fixity/cursor.json`` in the state container."""

    schema_version: int = SCHEMA
    marker: str | None = None  # the listing page being walked; None: the first
    after: str = ""  # the last custody record handled in that page
    current: PassSummary
    last_pass: PassSummary | None = None
    credit_bytes: float = 0.0
    credit_at: Instant | None = None  # when the credit was last brought up to date
    updated_at: Instant | None = None

    @classmethod
    def first(cls, now: datetime) -> FixityCursor:
        return cls(current=PassSummary(number=1, started_at=now))


def slice_bytes(bytes_per_day: float, interval_seconds: float) -> float:
    """What one run of a timer every ``interval_seconds`` may read at ``bytes_per_day``."""
    return bytes_per_day * interval_seconds / DAY_SECONDS


def accrue(cursor: FixityCursor, now: datetime, bytes_per_day: float, interval_seconds: float) -> FixityCursor:
    """The budget brought up to ``now``: one run's worth the first time, then the rate times the time since the
    last run, capped at CATCH_UP_RUNS runs' worth (a debt is kept whole: it is repaid by time)."""
    per_run = slice_bytes(bytes_per_day, interval_seconds)
    if cursor.credit_at is None:
        credit = per_run
    else:
        elapsed = max(0.0, (now - cursor.credit_at).total_seconds())
        credit = min(per_run * CATCH_UP_RUNS, cursor.credit_bytes + bytes_per_day * elapsed / DAY_SECONDS)
    return cursor.model_copy(update={"credit_bytes": credit, "credit_at": now})


def is_custody_record(name: str) -> bool:
    """A chain-of-custody record of an archived chunk: ``{callId}/{recordingKey}/{index}-{doc}.custody.json``."""
    return name.endswith(CUSTODY_SUFFIX) and not name.startswith("_") and name.count("/") == 2


def to_do(names: list[str], after: str) -> list[str]:
    """The custody records of a listed page still to be walked: those after the cursor's, in order."""
    return [name for name in names if name > after and is_custody_record(name)]


def handled(cursor: FixityCursor, name: str, read: int, failed: bool, charged: bool) -> FixityCursor:
    """One chunk walked past: counted in the pass, its bytes charged to the budget when ``charged`` (the timer's
    runs; a run by hand brings its own)."""
    current = cursor.current.model_copy(
        update={
            "chunks": cursor.current.chunks + 1,
            "bytes": cursor.current.bytes + read,
            "failures": cursor.current.failures + int(failed),
        }
    )
    credit = cursor.credit_bytes - read if charged else cursor.credit_bytes
    return cursor.model_copy(update={"after": name, "current": current, "credit_bytes": credit})


def next_page(cursor: FixityCursor, marker: str | None) -> FixityCursor:
    """The walk moves on to the page at ``marker``. ``after`` stays: every name there sorts after it anyway, and
    after a marker the service refused (the walk lists from the start again) it still marks where the pass was."""
    return cursor.model_copy(update={"marker": marker})


def pass_complete(cursor: FixityCursor, now: datetime) -> FixityCursor:
    """The walk reached the end of the listing: the pass is summed up, and the next starts from the first name."""
    done = cursor.current.model_copy(update={"finished_at": now})
    upcoming = PassSummary(number=done.number + 1, started_at=now)
    return cursor.model_copy(update={"marker": None, "after": "", "current": upcoming, "last_pass": done})


def period_days(cursor: FixityCursor, bytes_per_day: float) -> float | None:
    """How long a whole pass takes at ``bytes_per_day``: the last pass's bytes at that rate (None before the first
    pass ends; the current pass's bytes so far are a lower bound then)."""
    if cursor.last_pass is None:
        return None
    return max(cursor.last_pass.bytes, cursor.current.bytes) / bytes_per_day


def expected_end(cursor: FixityCursor, bytes_per_day: float) -> datetime | None:
    """When the current pass should end, if the archive is as large as at the last pass."""
    days = period_days(cursor, bytes_per_day)
    return None if days is None else cursor.current.started_at + timedelta(days=days)


class ChunkFixity(_Model):
    """One chunk's last check: when, what was found, by which pass."""

    verified_at: Instant
    result: str  # app/verification's CheckResult: ok, mismatch, missing, offline
    size: int | None = None  # of the blob, as found
    sha256: str | None = None  # of its content, as read (None: not read)
    pass_number: int
    problems: list[str] = []


class RecordingFixity(_Model):
    """A recording's chunks, each with its last check: ``_fixity/verified/{callId}/{recordingKey}.json``. It changes
    with every pass, so it lives in the state container, not beside the write-once evidence."""

    schema_version: int = SCHEMA
    call_id: str
    recording_key: str
    chunks: dict[str, ChunkFixity] = {}  # by ``{index:05d}-{documentId}``


def with_checks(doc: object | None, call_id: str, recording_key: str, checks: dict[str, ChunkFixity]) -> dict[str, Any]:
    """The recording's fixity document with ``checks`` put over what it held (a document that is not one is
    replaced: it is a view, made again by the next pass)."""
    try:
        current = RecordingFixity.model_validate(doc) if doc is not None else None
    except ValueError:
        current = None
    chunks = {**(current.chunks if current else {}), **checks}
    updated = RecordingFixity(call_id=call_id, recording_key=recording_key, chunks=chunks)
    return updated.model_dump(mode="json", by_alias=True)
