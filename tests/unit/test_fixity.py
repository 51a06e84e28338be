"""The fixity audit: its plan (core/fixity: the budget, the walk, the passes) and its runs on in-memory edges
(app/fixity: what it proves, what it finds, where it keeps its place and each chunk's last check)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from recording_pipeline.app.attempt import archive_chunk
from recording_pipeline.app.fixity import Budget, run_fixity_audit
from recording_pipeline.app.verification import CheckResult
from recording_pipeline.core.fixity import (
    CATCH_UP_RUNS,
    FixityCursor,
    PassSummary,
    accrue,
    is_custody_record,
    period_days,
    slice_bytes,
    to_do,
    with_checks,
)
from recording_pipeline.core.naming import FIXITY_CURSOR, FIXITY_LOCK, fixity_name
from tests.support.world import BLOCK, CALL, NOW, World, job

DAY = 86400.0
HOUR = 3600.0
SIZE = 5 * BLOCK + 17  # World.add's default chunk


# --- the plan -----------------------------------------------------------------------------------


def test_the_first_run_gets_one_run_s_worth_and_later_runs_what_time_accrued() -> None:
    per_run = slice_bytes(24_000, HOUR)
    assert per_run == 1000
    cursor = accrue(FixityCursor.first(NOW), NOW, 24_000, HOUR)
    assert cursor.credit_bytes == 1000 and cursor.credit_at == NOW
    spent = cursor.model_copy(update={"credit_bytes": -500.0})  # a chunk larger than the budget was taken
    later = accrue(spent, NOW + timedelta(hours=1), 24_000, HOUR)
    assert later.credit_bytes == 500  # the debt is repaid by time, so the average holds
    idle = accrue(cursor, NOW + timedelta(days=30), 24_000, HOUR)
    assert idle.credit_bytes == CATCH_UP_RUNS * 1000  # missed runs are not all made up at once
    assert accrue(cursor, NOW - timedelta(hours=1), 24_000, HOUR).credit_bytes == 1000  # a clock step back adds none


def test_the_walk_takes_custody_records_after_the_cursor_in_name_order() -> None:
    names = [
        "_index/participants/x/c/r",
        "a/r-1/00000-d.custody.json",
        "a/r-1/00000-d.metadata.json",
        "a/r-1/00000-d.mp4",
        "b/r-1/00001-e.custody.json",
        "_lost/a/r-1/00002-f.custody.json",
    ]
    assert to_do(names, "") == ["a/r-1/00000-d.custody.json", "b/r-1/00001-e.custody.json"]
    assert to_do(names, "a/r-1/00000-d.custody.json") == ["b/r-1/00001-e.custody.json"]
    assert not is_custody_record("a/r-1/x/00000-d.custody.json")


def test_the_period_is_known_once_a_pass_ends() -> None:
    cursor = FixityCursor.first(NOW)
    assert period_days(cursor, 100) is None
    done = PassSummary(number=1, started_at=NOW, finished_at=NOW + timedelta(days=2), bytes=1000)
    cursor = cursor.model_copy(update={"last_pass": done})
    assert done.days == 2 and period_days(cursor, 100) == 10


def test_a_recording_s_checks_are_merged_over_what_it_held() -> None:
    from recording_pipeline.core.fixity import ChunkFixity

    first = ChunkFixity(verified_at=NOW, result="ok", size=1, sha256="a", pass_number=1)
    doc = with_checks(None, CALL, "r-rec1", {"00000-d": first})
    again = with_checks(doc, CALL, "r-rec1", {"00001-e": first.model_copy(update={"pass_number": 2})})
    assert set(again["chunks"]) == {"00000-d", "00001-e"}
    assert with_checks({"not": "one"}, CALL, "r-rec1", {})["chunks"] == {}


# --- runs on in-memory edges --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.at = NOW
        self.ticks = 0.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.ticks


@pytest.fixture
async def world() -> World:
    """Three recordings of one chunk each, and one of two."""
    world = World()
    for number, (doc, index) in enumerate([("doc-a", 0), ("doc-b", 0), ("doc-c", 0), ("doc-d", 0), ("doc-e", 1)]):
        world.add(doc)
        recording = "rec1" if doc in ("doc-d", "doc-e") else f"rec{number + 2}"
        await archive_chunk(job(doc, index, last=doc != "doc-d", recording=recording), world.worker)
    return world


def media(world: World, doc: str) -> str:
    [name] = [n for n in world.archive.blobs if n.endswith(f"-{doc}.mp4")]
    return name


def custody_names(world: World) -> list[str]:
    return sorted(n for n in world.archive.blobs if n.endswith(".custody.json"))


def cursor_of(world: World) -> dict[str, Any]:
    return dict(json.loads(world.state.blobs[FIXITY_CURSOR].data))


async def audit(world: World, budget: Budget, clock: Clock | None = None, page_size: int = 2) -> Any:
    clock = clock or Clock()
    return await run_fixity_audit(
        world.archive, world.state, budget, clock.now, page_size=page_size, monotonic=clock.monotonic
    )


async def test_a_run_proves_no_more_than_its_budget_then_the_next_resumes_after_it(world: World) -> None:
    by_hand = Budget(10 * SIZE * 24, HOUR, fixed=2 * SIZE)
    first = await audit(world, by_hand)
    assert [c.result for c in first.checked] == [CheckResult.OK] * 2 and first.stopped == "budget"
    assert first.bytes_read == 2 * SIZE
    names = custody_names(world)
    assert cursor_of(world)["after"] == names[1]
    second = await audit(world, by_hand)
    assert len(second.checked) == 2
    assert {c.media_blob for c in first.checked}.isdisjoint(c.media_blob for c in second.checked)
    third = await audit(world, by_hand)
    assert len(third.checked) == 1 and third.stopped == "pass complete" and third.completed_pass
    cursor = cursor_of(world)
    assert cursor["lastPass"]["chunks"] == 5 and cursor["lastPass"]["bytes"] == 5 * SIZE
    assert cursor["current"]["number"] == 2 and cursor["marker"] is None and cursor["after"] == ""
    assert third.period_days == pytest.approx(5 * SIZE / (10 * SIZE * 24))
    fourth = await audit(world, by_hand)  # the next pass starts from the first name
    assert fourth.checked[0].media_blob == first.checked[0].media_blob


async def test_a_run_by_hand_leaves_the_timer_s_budget_alone(world: World) -> None:
    await audit(world, Budget(24 * SIZE, HOUR))  # the timer: one run's worth, SIZE
    timer_credit = cursor_of(world)["creditBytes"]
    await audit(world, Budget(24 * SIZE, HOUR, fixed=3 * SIZE))
    assert cursor_of(world)["creditBytes"] == timer_credit


async def test_the_timer_takes_a_chunk_larger_than_its_budget_and_repays_it_over_time(world: World) -> None:
    clock = Clock()
    budget = Budget(24 * SIZE // 2, HOUR)  # half a chunk an hour
    first = await audit(world, budget, clock)
    assert len(first.checked) == 1 and cursor_of(world)["creditBytes"] == pytest.approx(-SIZE / 2)
    clock.at += timedelta(minutes=30)
    assert (await audit(world, budget, clock)).checked == []  # still in debt
    clock.at += timedelta(hours=1, minutes=30)
    assert len((await audit(world, budget, clock)).checked) == 1


async def test_each_chunk_s_last_check_is_kept_per_recording(world: World) -> None:
    clock = Clock()
    await audit(world, Budget(DAY, HOUR, fixed=100 * SIZE), clock)
    doc = json.loads(world.state.blobs[fixity_name(CALL, "r-rec1")].data)
    assert set(doc["chunks"]) == {"00000-doc-d", "00001-doc-e"}
    entry = doc["chunks"]["00000-doc-d"]
    assert (entry["result"], entry["passNumber"], entry["verifiedAt"]) == ("ok", 1, NOW.isoformat())
    assert entry["sha256"] == world.custody("doc-d").sha256 and entry["size"] == SIZE
    clock.at += timedelta(days=1)
    await audit(world, Budget(DAY, HOUR, fixed=SIZE), clock)  # pass 2 begins with the first name again
    again = json.loads(world.state.blobs[fixity_name(CALL, "r-rec1")].data)["chunks"]
    assert again["00000-doc-d"]["passNumber"] == 2 and again["00000-doc-d"]["verifiedAt"] == clock.at.isoformat()
    assert again["00001-doc-e"]["passNumber"] == 1  # not reached yet in this pass
    assert world.archive.changed == []  # the archive was only read


async def test_a_flipped_byte_and_a_missing_blob_are_found_and_said(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    flipped, gone = media(world, "doc-b"), media(world, "doc-c")
    blob = world.archive.blobs[flipped]
    blob.data = bytes([blob.data[0] ^ 1]) + blob.data[1:]
    del world.archive.blobs[gone]
    caplog.set_level("INFO", logger="recording_pipeline")
    run = await audit(world, Budget(DAY, HOUR, fixed=100 * SIZE))
    found = {c.media_blob: (c.result, c.problems) for c in run.failures}
    assert found[flipped][0] is CheckResult.MISMATCH and "custody record says" in found[flipped][1][0]
    assert found[gone] == (CheckResult.MISSING, ["media blob is missing"])
    assert len(found[flipped][1]) == 1  # expected from the custody record: not said twice
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert sorted(r.getMessage().split(":")[1].strip() for r in errors) == [
        f"mismatch {flipped}",
        f"missing {gone}",
    ]
    assert {getattr(r, "call_id", None) for r in errors} == {CALL}
    assert cursor_of(world)["lastPass"]["failures"] == 2
    summary = [r for r in caplog.records if r.getMessage().startswith("fixity audit:")]
    assert summary[-1].__dict__["fixity_failures"] == 2


async def test_a_chain_of_custody_record_gone_after_it_was_listed_is_missing(world: World) -> None:
    real = world.archive.list_page

    async def listed_then_deleted(prefix: str, marker: str | None, size: int) -> tuple[list[str], str | None]:
        page = await real(prefix, marker, size)
        for name in page[0]:
            if "doc-a" in name and name.endswith(".custody.json"):
                del world.archive.blobs[name]
        return page

    world.archive.list_page = listed_then_deleted  # type: ignore[method-assign]
    run = await audit(world, Budget(DAY, HOUR, fixed=100 * SIZE))
    [gone] = run.failures
    assert (gone.result, gone.problems) == (CheckResult.MISSING, ["no chain-of-custody record"])


async def test_a_marker_the_service_no_longer_takes_restarts_the_listing_not_the_pass(world: World) -> None:
    await audit(world, Budget(DAY, HOUR, fixed=3 * SIZE))  # into the second page of two names
    cursor = cursor_of(world)
    assert cursor["marker"] is not None
    cursor["marker"] = "a marker from long ago"
    await world.state.update_json(FIXITY_CURSOR, lambda _doc: cursor)
    run = await audit(world, Budget(DAY, HOUR, fixed=100 * SIZE))
    assert len(run.checked) == 2 and run.completed_pass  # the other two, not all five again


async def test_one_run_at_a_time(world: World) -> None:
    async with world.state.lease(FIXITY_LOCK, 60, wait=0):
        run = await audit(world, Budget(DAY, HOUR, fixed=100 * SIZE))
    assert run.stopped == "busy" and run.checked == [] and FIXITY_CURSOR not in world.state.blobs


async def test_a_run_ends_itself_in_time_and_keeps_its_place(world: World) -> None:
    clock = Clock()
    real = world.archive.sha256

    async def slow(name: str, progress: Any = None) -> tuple[str, int]:
        clock.ticks += 10 * 60  # each chunk takes ten minutes
        return await real(name, progress)

    world.archive.sha256 = slow  # type: ignore[method-assign]
    run = await audit(world, Budget(DAY, HOUR, fixed=100 * SIZE), clock)
    assert run.stopped == "time" and len(run.checked) == 2
    assert cursor_of(world)["after"] == custody_names(world)[1]


async def test_archive_tier_media_is_offline_not_a_failure(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from recording_pipeline.core.errors import BlobArchivedError

    real = world.archive.sha256

    async def tiered(name: str, progress: Any = None) -> tuple[str, int]:
        if "doc-a" in name:
            raise BlobArchivedError(f"read {name}: 409 BlobArchived", 409, "BlobArchived")
        return await real(name, progress)

    monkeypatch.setattr(world.archive, "sha256", tiered)
    run = await audit(world, Budget(DAY, HOUR, fixed=100 * SIZE))
    assert run.failures == [] and run.count(CheckResult.OFFLINE) == 1
    assert run.bytes_read == 4 * SIZE  # it read nothing of the offline one
