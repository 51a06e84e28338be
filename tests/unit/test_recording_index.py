"""The archive's index on in-memory edges: what the worker files, what each lookup lists (and nothing else), the
case index and access records a legal hold leaves, and reindex making every entry again from the archive alone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from recording_pipeline.app.access import accesses_of, accesses_on, record_access
from recording_pipeline.app.attempt import archive_chunk
from recording_pipeline.app.recording_index import (
    RecordingRef,
    days_between,
    recordings_of_call,
    recordings_of_case,
)
from recording_pipeline.app.reindex import reindex
from recording_pipeline.app.worker import handle_chunk_message
from recording_pipeline.cli.holds import case_recordings, clear_hold, place_hold
from recording_pipeline.cli.status import recording_status
from recording_pipeline.core.access import access_record
from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.jobs import encode_job
from recording_pipeline.core.naming import (
    DAYS_PREFIX,
    HOLDS_PREFIX,
    access_record_name,
    access_record_of,
    case_entry,
    day_entry,
    day_prefix,
    recording_access_entry,
)
from tests.support.world import CALL, NOW, World, job

OTHER = "beef0000-0000-0000-0000-000000000000"
FAILED = "dead0000-0000-0000-0000-000000000000"
LOST = "10570000-0000-0000-0000-000000000000"


def started(days_ago: int) -> datetime:
    return NOW - timedelta(days=days_ago)


@pytest.fixture
async def world() -> World:
    """CALL: two chunks archived, started 3 days ago; OTHER: archived, 1 day ago; LOST: its only chunk gone from
    ACS, 1 day ago; FAILED: its only chunk quarantined, today."""
    world = World()
    for doc in ("doc-1", "doc-2", "doc-9"):
        world.add(doc)
    for first in (job("doc-1", 0, last=False), job("doc-2", 1)):
        await archive_chunk(first.model_copy(update={"recording_start_time": started(3)}), world.worker)
    other = job("doc-9", 0, call=OTHER, recording="rec9").model_copy(update={"recording_start_time": started(1)})
    await archive_chunk(other, world.worker)
    lost = job("doc-gone", 0, call=LOST, recording="recL").model_copy(update={"recording_start_time": started(1)})
    await archive_chunk(lost, world.worker)  # ACS never had it
    world.add("doc-bad")
    world.acs.fail_next_metadata = 100
    world.worker.clock = lambda: NOW + timedelta(hours=23, minutes=45)  # too near the deadline to wait
    failed = job("doc-bad", 0, call=FAILED, recording="recF")
    assert await handle_chunk_message(encode_job(failed), 4, world.worker) is None
    assert world.queue.poison  # quarantined
    world.worker.clock = lambda: NOW
    return world


def refs(*pairs: tuple[str, str]) -> list[RecordingRef]:
    return sorted(RecordingRef(c, k) for c, k in pairs)


async def test_every_recording_with_a_manifest_is_filed_under_its_start_day(world: World) -> None:
    filed = sorted(n for n in world.archive.blobs if n.startswith(DAYS_PREFIX))
    assert filed == sorted(
        [
            day_entry(started(3).date(), CALL, "r-rec1"),
            day_entry(started(1).date(), OTHER, "r-rec9"),
            day_entry(started(1).date(), LOST, "r-recL"),  # lost: never archived, found all the same
            day_entry(NOW.date(), FAILED, "r-recF"),  # failed, and no start time: the event's day
        ]
    )
    assert world.archive.changed == []  # created once each, never rewritten


async def test_a_day_s_lookup_lists_that_day_and_reads_only_its_manifests(world: World) -> None:
    world.archive.log.clear()
    world.state.log.clear()
    day = started(1)
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    report = await recording_status(world.archive, world.state, since=since, until=since + timedelta(days=1), now=NOW)
    assert [(r.call_id, r.state.value) for r in report.recordings] == [(LOST, "lost"), (OTHER, "complete")]
    assert world.archive.log == [("list", day_prefix(day.date()))]  # one listing, never the archive
    state_reads = sorted(name for kind, name in world.state.log if kind == "get")
    assert state_reads == sorted([f"{LOST}/r-recL/manifest.json", f"{OTHER}/r-rec9/manifest.json"])
    assert [name for kind, name in world.state.log if kind == "list"] == [HOLDS_PREFIX]
    assert report.unreadable == []


async def test_since_and_until_bound_the_days_listed_and_the_start_times(world: World) -> None:
    async def calls(since: datetime | None, until: datetime | None = None) -> list[str]:
        report = await recording_status(world.archive, world.state, since=since, until=until, now=NOW)
        return [r.call_id for r in report.recordings]

    assert await calls(None) == [CALL, LOST, OTHER, FAILED]  # oldest first; the whole day index
    assert await calls(started(2)) == [LOST, OTHER, FAILED]
    assert await calls(None, started(2)) == [CALL]
    assert await calls(started(3), started(3) + timedelta(seconds=1)) == [CALL]  # to the second
    assert await calls(started(3) + timedelta(seconds=1), started(1)) == []  # until is exclusive
    assert await calls(NOW + timedelta(days=1)) == []
    world.archive.log.clear()
    await calls(started(3), started(1))
    listed = [name for kind, name in world.archive.log if kind == "list"]
    assert sorted(listed) == [day_prefix(started(n).date()) for n in (3, 2, 1)]  # until: 09:00 on its day


def test_days_between_covers_the_days_a_time_in_the_range_falls_on() -> None:
    at = datetime(2026, 3, 3, 23, 30, tzinfo=UTC)
    assert days_between(at, at + timedelta(hours=1)) == [date(2026, 3, 3), date(2026, 3, 4)]
    assert days_between(at, at.replace(hour=23, minute=59)) == [date(2026, 3, 3)]
    midnight = datetime(2026, 3, 4, tzinfo=UTC)
    assert days_between(midnight - timedelta(days=1), midnight) == [date(2026, 3, 3)]  # until is exclusive


async def test_a_status_entry_without_a_manifest_is_named(world: World) -> None:
    del world.state.blobs[f"{OTHER}/r-rec9/manifest.json"]
    report = await recording_status(world.archive, world.state, since=started(2), now=NOW)
    assert OTHER not in [r.call_id for r in report.recordings]
    assert report.unreadable == [f"{OTHER}/r-rec9/manifest.json: no manifest (rebuild-state makes it again)"]


async def test_a_call_s_recordings_come_from_its_folder_and_its_lost_folder(world: World) -> None:
    assert await recordings_of_call(world.archive, CALL) == refs((CALL, "r-rec1"))
    assert await recordings_of_call(world.archive, LOST) == refs((LOST, "r-recL"))
    assert await recordings_of_call(world.archive, CALL, "r-nope") == []


async def test_a_hold_files_its_case_and_each_change_leaves_an_access_record(world: World) -> None:
    hold = await place_hold(world.archive, world.state, "CASE-9", [CALL, OTHER], NOW, actor="ana@desk")
    assert sorted(hold.recordings) == [(OTHER, "r-rec9"), (CALL, "r-rec1")]
    assert await recordings_of_case(world.archive, "CASE-9") == (refs((CALL, "r-rec1"), (OTHER, "r-rec9")), [])
    assert [r["state"] for r in await case_recordings(world.archive, world.state, "CASE-9")] == ["complete"] * 2
    await clear_hold(world.archive, world.state, "CASE-9", NOW + timedelta(hours=1), actor="ben@desk")
    trail = await accesses_of(world.archive, CALL, "r-rec1")
    assert [(a.action, a.actor, a.case) for a in trail] == [
        ("hold-place", "ana@desk", "CASE-9"),
        ("hold-clear", "ben@desk", "CASE-9"),
    ]
    assert [a.action for a in await accesses_on(world.archive, NOW.date())] == ["hold-place", "hold-clear"]
    assert case_entry("CASE-9", CALL, "r-rec1") in world.archive.blobs  # a cleared case keeps what it covered
    assert world.archive.changed == []


def test_access_names_sort_by_time_and_point_at_their_record() -> None:
    at = datetime(2026, 3, 3, 14, 5, 6, 789, tzinfo=UTC)
    rid = "0" * 31 + "1"
    name = access_record_name(at, "export", rid)
    assert name == f"_access/2026-03-03/140506000789Z-export-{rid}.json"
    entry = recording_access_entry(CALL, "r-rec1", at, "export", rid)
    assert entry == f"_index/access/{CALL}/r-rec1/20260303T140506000789Z-export-{rid}"
    assert access_record_of(entry) == name
    with pytest.raises(InvalidEventError):
        access_record_name(at, "overwrite", rid)
    with pytest.raises(InvalidEventError):
        access_record_name(at, "export", "../x")


async def test_reindex_makes_every_entry_again_from_the_archive_alone(world: World) -> None:
    await place_hold(world.archive, world.state, "CASE-9", [CALL], NOW)
    export = access_record("export", "ana@desk", NOW, [(OTHER, "r-rec9")], "0.0.0", details={"bag": "x"})
    await record_access(world.archive, export)
    index = {n: b.data for n, b in world.archive.blobs.items() if n.startswith("_index/")}
    assert len(index) == 4 + 4 + 1 + 2  # days, participants (2 per archived recording), case, accesses
    for name in index:
        del world.archive.blobs[name]
    report = await reindex(world.archive, world.state)
    assert report.unreadable == []
    assert report.recordings == 3  # CALL, OTHER, LOST; FAILED comes from the state's _quarantine/
    assert dict(report.created) == {"day": 4, "participant": 4, "case": 1, "access": 2}
    assert {n for n in world.archive.blobs if n.startswith("_index/")} == set(index)
    day_of_call = day_entry(started(3).date(), CALL, "r-rec1")
    assert world.archive.blobs[day_of_call].data == index[day_of_call]  # the same entry, byte for byte
    again = await reindex(world.archive, world.state)
    assert sum(again.created.values()) == 0  # nothing missing: nothing created
    listed = {name for kind, name in world.archive.log if kind == "list"}
    assert "" not in listed and "_index/" not in listed  # never a listing of the whole archive or the index
