"""The fixity audit: on each run a bounded slice of the archive is proved again, the walk resuming where the last
run stopped, so that a flipped byte or a missing blob is found without anyone asking.

Each chunk is proved as ``recording-archive verify`` proves it (app/verification): its chain-of-custody record
read, the media's size and committed block list checked, the metadata document and the media re-hashed. What a
run may read, the order of the walk and the cursor that keeps its place are core/fixity's. A chunk that fails is an
error log line ``fixity check failed`` with its identity and a ``recording.fixity.chunks`` point with its result
(infra alerts on both); each chunk's last check is kept per recording in the state container
(``_fixity/verified/...``), the cursor in ``_fixity/cursor.json``. One run at a time holds the lease on
``_locks/_fixity``: the timer on another instance, or an operator's run by hand, finds it held and does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from recording_pipeline.app.verification import CUSTODY, CheckResult, ChunkCheck, read_custody, verify_chunk
from recording_pipeline.core.errors import StorageError
from recording_pipeline.core.fixity import (
    CUSTODY_SUFFIX,
    ChunkFixity,
    FixityCursor,
    accrue,
    handled,
    next_page,
    pass_complete,
    period_days,
    to_do,
    with_checks,
)
from recording_pipeline.core.naming import FIXITY_CURSOR, FIXITY_LOCK, fixity_name
from recording_pipeline.core.ports import ArchiveStore, StateStore
from recording_pipeline.core.state import ChunkState
from recording_pipeline.edges.telemetry import FIXITY_BYTES, FIXITY_CHUNKS, FIXITY_PASS_DAYS, log_context

log = logging.getLogger(__name__)

# The timer (function_app.fixity_audit): every hour at 20 past, each run FIXITY_BYTES_PER_DAY / 24 on average.
SCHEDULE = "0 20 * * * *"
RUN_INTERVAL_SECONDS = 3600
PAGE_SIZE = 5000  # names per List Blobs request, the service's most
SAVE_SECONDS = 30.0  # a run that dies does at most this much again
RUN_SECONDS = 15 * 60.0  # a run ends itself after this long, whatever its budget (functionTimeout is 55 minutes)
LEASE_SECONDS = 60
FAILED = (CheckResult.MISMATCH, CheckResult.MISSING)
FAILED_LINE = "fixity check failed"  # the error log line infra alerts on (infra/modules/alerts.bicep)

Progress = Callable[[int, int], None]  # (bytes read, bytes the run may read)


@dataclass(frozen=True)
class Budget:
    """What a run may read: the timer's, accrued at ``bytes_per_day`` for a run every ``interval_seconds``; or, for
    a run by hand, ``fixed`` bytes that the timer's budget is not charged for."""

    bytes_per_day: float
    interval_seconds: float
    fixed: int | None = None


@dataclass
class FixityRun:
    """What one run did, and where the walk is."""

    started_at: datetime
    stopped: str  # "budget" (spent), "time" (RUN_SECONDS), "pass complete", or "busy" (another run holds the lease)
    checked: list[ChunkCheck] = field(default_factory=list)
    bytes_read: int = 0
    cursor: FixityCursor | None = None
    period_days: float | None = None  # a whole pass at FIXITY_BYTES_PER_DAY, once a pass has ended
    completed_pass: bool = False

    @property
    def failures(self) -> list[ChunkCheck]:
        return [c for c in self.checked if c.result in FAILED]

    def count(self, result: CheckResult) -> int:
        return sum(1 for c in self.checked if c.result is result)

    def to_dict(self) -> dict[str, Any]:
        cursor = self.cursor.model_dump(mode="json", by_alias=True) if self.cursor else None
        return {
            "startedAt": self.started_at.isoformat(),
            "stopped": self.stopped,
            "bytesRead": self.bytes_read,
            "chunks": {r.value: self.count(r) for r in CheckResult if r is not CheckResult.SKIPPED},
            "failures": [c.to_dict() for c in self.failures],
            "completedPass": self.completed_pass,
            "periodDays": self.period_days,
            "cursor": cursor,
        }


async def run_fixity_audit(
    archive: ArchiveStore,
    state: StateStore,
    budget: Budget,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    page_size: int = PAGE_SIZE,
    progress: Progress | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> FixityRun:
    """One run: the slice ``budget`` allows, from the cursor on, and the cursor saved; nothing if another run holds
    the lease."""
    async with state.lease(FIXITY_LOCK, LEASE_SECONDS, wait=0) as held:
        if not held:
            log.info("fixity audit: another run holds %s; this one does nothing", FIXITY_LOCK)
            return FixityRun(now(), "busy")
        walk = _Walk(archive, state, budget, now, progress, monotonic)
        run = await walk.run(page_size)
    _report(run, budget)
    return run


async def read_cursor(state: StateStore, now: datetime) -> FixityCursor:
    found = await state.read_json(FIXITY_CURSOR)
    if found is None:
        return FixityCursor.first(now)
    try:
        return FixityCursor.model_validate(found[0])
    except ValueError:  # not one (edited by hand): the walk starts again, which costs only time
        log.warning("fixity audit: %s is not a cursor; starting a new pass", FIXITY_CURSOR)
        return FixityCursor.first(now)


class _Walk:
    def __init__(
        self,
        archive: ArchiveStore,
        state: StateStore,
        budget: Budget,
        now: Callable[[], datetime],
        progress: Progress | None,
        monotonic: Callable[[], float],
    ) -> None:
        self.archive, self.state, self.budget, self.now = archive, state, budget, now
        self.progress, self.monotonic = progress, monotonic
        self.pending: dict[tuple[str, str], dict[str, ChunkFixity]] = {}  # checks not written yet, by recording

    async def run(self, page_size: int) -> FixityRun:
        started, since = self.now(), self.monotonic()
        cursor = await read_cursor(self.state, started)
        if self.budget.fixed is None:
            cursor = accrue(cursor, started, self.budget.bytes_per_day, self.budget.interval_seconds)
        allowance = int(self.budget.fixed if self.budget.fixed is not None else max(0.0, cursor.credit_bytes))
        run = FixityRun(started, "budget")
        saved = self.monotonic()
        while run.bytes_read < allowance:
            names, marker, cursor = await self._page(cursor, page_size)
            for name in to_do(names, cursor.after):
                if run.bytes_read >= allowance:
                    break
                if self.monotonic() - since > RUN_SECONDS:
                    run.stopped = "time"
                    break
                check = await self._prove(name, cursor.current.number, run.bytes_read, allowance)
                read = (check.actual_size or 0) if check.actual_sha256 is not None else 0
                run.checked.append(check)
                run.bytes_read += read
                cursor = handled(cursor, name, read, check.result in FAILED, charged=self.budget.fixed is None)
                if self.monotonic() - saved > SAVE_SECONDS:
                    await self._save(cursor)
                    saved = self.monotonic()
            if run.stopped == "time" or run.bytes_read >= allowance:
                break
            if marker is None:  # the end of the archive: this pass is done, the next starts on the next run
                cursor = pass_complete(cursor, self.now())
                run.stopped, run.completed_pass = "pass complete", True
                break
            cursor = next_page(cursor, marker)
        await self._save(cursor)
        run.cursor, run.period_days = cursor, period_days(cursor, self.budget.bytes_per_day)
        return run

    async def _page(self, cursor: FixityCursor, size: int) -> tuple[list[str], str | None, FixityCursor]:
        """The page at the cursor's marker, the next page's marker, and the cursor (without a marker the service
        refused: the walk lists from the first name then, skipping what the pass did, and keeps no bad marker)."""
        try:
            names, marker = await self.archive.list_page("", cursor.marker, size)
        except StorageError as exc:
            if exc.status != 400 or cursor.marker is None:
                raise
            log.warning("fixity audit: the listing marker was refused (%s); listing from the start of the pass", exc)
            cursor = next_page(cursor, None)
            names, marker = await self.archive.list_page("", None, size)
        return names, marker, cursor

    async def _prove(self, name: str, pass_number: int, done: int, allowance: int) -> ChunkCheck:
        stem = name.removesuffix(CUSTODY_SUFFIX)
        call_id, rec_key, chunk = stem.split("/")
        index = int(chunk.split("-", 1)[0]) if chunk.split("-", 1)[0].isdigit() else -1
        check = ChunkCheck(index=index, document_id=None, chunk_state=ChunkState.ARCHIVED, media_blob=None)
        read = 0

        def advance(count: int) -> None:
            nonlocal read
            read += count
            if self.progress is not None:
                self.progress(min(done + read, allowance), allowance)

        with log_context(call_id=call_id, chunk_index=index):
            custody = await read_custody(self.archive, stem, check, absent=CheckResult.MISSING)
            if custody is not None:
                check.document_id, check.media_blob = custody.chunk.document_id, custody.media_blob
                check.expected_size, check.expected_sha256 = custody.size, custody.sha256
                with log_context(document_id=check.document_id, recording_id=custody.chunk.recording_id):
                    await verify_chunk(self.archive, check, stem, advance, custody, against=CUSTODY)
            self._note(check, call_id, rec_key, chunk, pass_number)
        return check

    def _note(self, check: ChunkCheck, call_id: str, rec_key: str, chunk: str, pass_number: int) -> None:
        FIXITY_CHUNKS.add(1, {"result": check.result.value})
        if check.actual_sha256 is not None:
            FIXITY_BYTES.add(check.actual_size or 0)
        if check.result in FAILED:
            log.error(
                f"{FAILED_LINE}: %s %s: %s",
                check.result.value,
                check.media_blob or f"{call_id}/{rec_key}/{chunk}",
                "; ".join(check.problems),
                extra={"fixity_result": check.result.value, "blob": check.media_blob, "problems": check.problems},
            )
        recording = self.pending.setdefault((call_id, rec_key), {})
        recording[chunk] = ChunkFixity(
            verified_at=self.now(),
            result=check.result.value,
            size=check.actual_size,
            sha256=check.actual_sha256,
            pass_number=pass_number,
            problems=check.problems,
        )

    async def _save(self, cursor: FixityCursor) -> None:
        """Each chunk's check, then the cursor past it: a run that dies after the first write does those chunks
        again, never skips one."""
        for (call_id, rec_key), checks in sorted(self.pending.items()):
            await self.state.update_json(fixity_name(call_id, rec_key), _merge(call_id, rec_key, checks))
        self.pending.clear()
        doc = cursor.model_copy(update={"updated_at": self.now()}).model_dump(mode="json", by_alias=True)
        await self.state.update_json(FIXITY_CURSOR, lambda _current: doc)


def _merge(call_id: str, rec_key: str, checks: dict[str, ChunkFixity]) -> Callable[[Any], Any]:
    return lambda doc: with_checks(doc, call_id, rec_key, checks)


def _report(run: FixityRun, budget: Budget) -> None:
    cursor = run.cursor
    assert cursor is not None
    done = cursor.last_pass
    if run.completed_pass and done is not None and done.days is not None:
        FIXITY_PASS_DAYS.set(done.days)
        log.info(
            "fixity pass %d complete: %d chunk(s), %d bytes, %d failed, in %.2f days",
            done.number,
            done.chunks,
            done.bytes,
            done.failures,
            done.days,
            extra={"fixity_pass": done.number, "fixity_pass_days": done.days, "fixity_pass_bytes": done.bytes},
        )
    log.info(
        "fixity audit: %d chunk(s), %d bytes read, %d failed, %d offline; pass %d: %d chunk(s) so far; stopped: %s; "
        "a whole pass takes %s",
        len(run.checked),
        run.bytes_read,
        len(run.failures),
        run.count(CheckResult.OFFLINE),
        cursor.current.number,
        cursor.current.chunks,
        run.stopped,
        "an unknown time until the first pass ends" if run.period_days is None else f"{run.period_days:.1f} days",
        extra={
            "fixity_chunks": len(run.checked),
            "fixity_bytes": run.bytes_read,
            "fixity_failures": len(run.failures),
            "fixity_period_days": run.period_days,
            "fixity_credit_bytes": None if budget.fixed is not None else round(cursor.credit_bytes),
        },
    )
