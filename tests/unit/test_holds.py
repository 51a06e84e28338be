"""Legal holds, on in-memory edges (Azurite does not implement Set Blob Legal Hold): which blobs a hold covers,
the registry of cases, clearing only what no other case still holds, and never a case in the registry for a hold
the storage refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from recording_pipeline.app.attempt import archive_chunk
from recording_pipeline.cli.holds import (
    active_holds,
    clear_hold,
    held_recordings,
    place_hold,
    refusal,
    select_blobs,
)
from recording_pipeline.cli.status import recording_status
from recording_pipeline.core.errors import HoldRefusedError, OperatorInputError, StorageError
from recording_pipeline.core.naming import (
    ACCESS_INDEX_PREFIX,
    ACCESS_PREFIX,
    CASES_PREFIX,
    hold_name,
    participant_entry,
)
from tests.support.world import CALL, NOW, World, job

OTHER = "beef0000-0000-0000-0000-000000000000"


@pytest.fixture
async def world() -> World:
    """Two chunks of one recording archived, a third chunk lost; and another call's recording."""
    world = World()
    world.add("doc-1")
    world.add("doc-2")
    world.add("doc-9")
    await archive_chunk(job("doc-1", 0, last=False), world.worker)
    await archive_chunk(job("doc-2", 1, last=False), world.worker)
    await archive_chunk(job("doc-3", 2), world.worker)  # ACS never had it: lost
    await archive_chunk(job("doc-9", 0, call=OTHER, recording="rec9"), world.worker)
    return world


def held(world: World) -> set[str]:
    return {name for name, blob in world.archive.blobs.items() if blob.legal_hold}


def case_index_and_access_records(world: World) -> list[str]:
    """What a hold the storage took leaves in the archive: the case's index entries and the access records."""
    return [n for n in world.archive.blobs if n.startswith((CASES_PREFIX, ACCESS_PREFIX, ACCESS_INDEX_PREFIX))]


async def test_a_hold_covers_every_blob_of_the_recording_and_nothing_else(world: World) -> None:
    recordings, blobs = await select_blobs(world.archive, [CALL])
    assert recordings == [(CALL, "r-rec1")]
    stems = [job("doc-1", 0).stem, job("doc-2", 1).stem]
    expected = {f"{stem}{ext}" for stem in stems for ext in (".mp4", ".metadata.json", ".custody.json")}
    expected |= {f"{stem}.source-deleted.json" for stem in stems}
    expected |= {f"_lost/{job('doc-3', 2).stem}.json"}
    expected |= {participant_entry(p, CALL, "r-rec1") for p in ("8:acs:a", "4:+1555")}
    assert set(blobs) == expected
    assert not [b for b in blobs if OTHER in b]
    assert await select_blobs(world.archive, [f"{CALL}/r-rec1"]) == (recordings, blobs)


async def test_placing_a_hold_holds_each_blob_and_names_the_case(world: World) -> None:
    hold = await place_hold(world.archive, world.state, "CASE-42", [CALL], NOW)
    assert held(world) == set(hold.blobs) and len(hold.blobs) == 11
    assert hold_name("CASE-42") in world.state.blobs
    assert await held_recordings(world.state) == {(CALL, "r-rec1"): ("CASE-42",)}
    report = await recording_status(world.archive, world.state, now=NOW)
    assert {r.call_id: r.holds for r in report.recordings} == {CALL: ("CASE-42",), OTHER: ()}
    assert world.archive.changed == []  # a hold is not a change of the blob
    assert any(n.startswith(CASES_PREFIX) for n in case_index_and_access_records(world))  # taken: the case filed


async def test_placing_it_again_adds_what_was_archived_since(world: World) -> None:
    await place_hold(world.archive, world.state, "CASE-42", [CALL], NOW)
    world.add("doc-4")
    await archive_chunk(job("doc-4", 3), world.worker)
    again = await place_hold(world.archive, world.state, "CASE-42", [CALL], NOW + timedelta(hours=1))
    assert f"{job('doc-4', 3).stem}.mp4" in held(world) and again.placed_at == NOW


async def test_clearing_releases_only_what_no_other_open_case_holds(world: World) -> None:
    await place_hold(world.archive, world.state, "CASE-1", [CALL], NOW)
    await place_hold(world.archive, world.state, "CASE-2", [f"{CALL}/r-rec1", OTHER], NOW)
    cleared, kept = await clear_hold(world.archive, world.state, "CASE-1", NOW + timedelta(days=1))
    assert cleared.cleared_at is not None and kept == 11
    assert len(held(world)) == 11 + 6  # CASE-2 still holds rec1, and the other call's recording (6 blobs) too
    await clear_hold(world.archive, world.state, "CASE-2", NOW + timedelta(days=2))
    assert held(world) == set() and await active_holds(world.state) == []


@pytest.mark.parametrize("case", ["", "../escape", "a b"])
async def test_a_case_id_must_be_a_safe_name(world: World, case: str) -> None:
    with pytest.raises(OperatorInputError):
        await place_hold(world.archive, world.state, case, [CALL], NOW)


async def test_holding_nothing_or_clearing_an_unknown_case_is_an_operator_error(world: World) -> None:
    with pytest.raises(OperatorInputError, match="nothing is archived"):
        await place_hold(world.archive, world.state, "CASE-1", ["aaaa0000-0000-0000-0000-000000000000"], NOW)
    with pytest.raises(OperatorInputError, match="no open legal hold"):
        await clear_hold(world.archive, world.state, "CASE-404", NOW)


async def test_a_hold_the_storage_refuses_is_recorded_nowhere(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Azurite, which answers Set Blob Legal Hold with 501: no registry entry, nothing held, nothing shown."""

    async def refuse(name: str, hold: bool) -> None:
        raise StorageError(f"legal hold on {name}: 501 NotImplemented", 501, "NotImplemented")

    monkeypatch.setattr(world.archive, "set_legal_hold", refuse)
    with pytest.raises(HoldRefusedError) as refused:
        await place_hold(world.archive, world.state, "CASE-7", [CALL], NOW)
    assert refused.value.status == 501 and "NotImplemented" in refusal(refused.value)
    assert hold_name("CASE-7") not in world.state.blobs and held(world) == set()
    assert await held_recordings(world.state) == {} and await active_holds(world.state) == []
    assert case_index_and_access_records(world) == []  # no case filed, no access recorded


async def test_no_answer_from_the_storage_is_not_called_a_refusal(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(name: str, hold: bool) -> None:
        raise StorageError(f"legal hold on {name}: ServiceRequestError: Cannot connect to host")

    monkeypatch.setattr(world.archive, "set_legal_hold", unreachable)
    with pytest.raises(StorageError) as raised:
        await place_hold(world.archive, world.state, "CASE-7", [CALL], NOW)
    assert not isinstance(raised.value, HoldRefusedError) and hold_name("CASE-7") not in world.state.blobs
    assert case_index_and_access_records(world) == []


async def test_a_registry_that_cannot_be_written_leaves_no_blob_held(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise StorageError("write _holds/CASE-7.json: 503 ServerBusy", 503, "ServerBusy")

    monkeypatch.setattr(world.state, "update_json", broken)
    with pytest.raises(StorageError, match="ServerBusy"):
        await place_hold(world.archive, world.state, "CASE-7", [CALL], NOW)
    assert held(world) == set() and case_index_and_access_records(world) == []


async def test_clearing_a_hold_the_storage_will_not_release_keeps_the_case_open(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await place_hold(world.archive, world.state, "CASE-1", [CALL], NOW)
    recorded = case_index_and_access_records(world)

    async def refuse(name: str, hold: bool) -> None:
        raise StorageError(f"legal hold on {name}: 403 AuthorizationPermissionMismatch", 403, "Authorization")

    monkeypatch.setattr(world.archive, "set_legal_hold", refuse)
    with pytest.raises(HoldRefusedError):
        await clear_hold(world.archive, world.state, "CASE-1", NOW)
    assert [h.case for h in await active_holds(world.state)] == ["CASE-1"]
    assert case_index_and_access_records(world) == recorded  # no hold-clear access record for a refused clear
