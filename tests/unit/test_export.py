"""Export on the in-memory archive, to a real folder: which recordings a query selects, what the plan puts in the
bag, and the bag itself (validated by the Library of Congress's bagit). Azurite, the .zip and the container
target, tampering and resuming are in tests/e2e/test_export.py."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import bagit
import pytest

from recording_pipeline.app.attempt import archive_chunk
from recording_pipeline.app.export import ExportQuery, export_bag, plan_export, select_recordings
from recording_pipeline.app.recording_index import RecordingRef
from recording_pipeline.core.errors import OperatorInputError
from recording_pipeline.edges.bag_folder import FolderBag
from tests.support.world import CALL, NOW, World, job

OTHER = "beef0000-0000-0000-0000-000000000000"


@pytest.fixture
async def world() -> World:
    """CALL: chunks 0 and 1 archived (started 2 days ago), chunk 2 lost; OTHER: one chunk archived, yesterday."""
    world = World()
    for doc in ("doc-1", "doc-2", "doc-9"):
        world.add(doc)
    two_days = {"recording_start_time": NOW - timedelta(days=2)}
    await archive_chunk(job("doc-1", 0, last=False).model_copy(update=two_days), world.worker)
    await archive_chunk(job("doc-2", 1, last=False).model_copy(update=two_days), world.worker)
    await archive_chunk(job("doc-3", 2).model_copy(update=two_days), world.worker)  # ACS never had it
    yesterday = {"recording_start_time": NOW - timedelta(days=1)}
    await archive_chunk(job("doc-9", 0, call=OTHER, recording="rec9").model_copy(update=yesterday), world.worker)
    return world


async def selected(world: World, query: ExportQuery) -> list[RecordingRef]:
    return await select_recordings(world.archive, query, NOW)


async def test_selectors_narrow_each_other(world: World) -> None:
    both = [RecordingRef(OTHER, "r-rec9"), RecordingRef(CALL, "r-rec1")]
    assert await selected(world, ExportQuery(calls=(CALL, OTHER))) == sorted(both)
    assert await selected(world, ExportQuery(participant="8:acs:a")) == sorted(both)
    assert await selected(world, ExportQuery(calls=(CALL,), participant="8:acs:a")) == [RecordingRef(CALL, "r-rec1")]
    assert await selected(world, ExportQuery(since=NOW - timedelta(days=1, hours=1))) == [RecordingRef(OTHER, "r-rec9")]
    assert await selected(world, ExportQuery(case="CASE-1")) == []
    with pytest.raises(OperatorInputError, match="name what to export"):
        await selected(world, ExportQuery())
    with pytest.raises(OperatorInputError, match="callId"):
        await selected(world, ExportQuery(calls=("../x",)))


async def test_the_plan_takes_every_proved_chunk_its_records_and_the_lost_one_s_record(world: World) -> None:
    query = ExportQuery(calls=(CALL,))
    plan = await plan_export(world.archive, await selected(world, query), query)
    kinds = sorted((f.kind.value, f.chunk.index if f.chunk else None) for f in plan.files)
    assert kinds == sorted(
        [(k, i) for i in (0, 1) for k in ("media", "metadata", "custody", "source-deleted")] + [("lost", 2)]
    )
    media = [f for f in plan.files if f.kind.value == "media"]
    assert all(f.sha256 and f.size for f in media)  # what each must be, from its custody record
    [summary] = plan.recordings
    assert (summary["chunksArchived"], summary["chunksLost"], summary["complete"]) == ([0, 1], [2], False)
    assert [r.participants for r in plan.rows if r.state == "archived"] == [["8:acs:a", "4:+1555"]] * 2
    late = ExportQuery(calls=(CALL,), since=NOW - timedelta(days=1))  # the recording started before
    assert (await plan_export(world.archive, await selected(world, late), late)).files == []


async def test_a_chunk_copied_but_not_proved_is_left_out_and_said_so(world: World) -> None:
    world.add("doc-4")
    await archive_chunk(job("doc-4", 3), world.worker)
    del world.archive.blobs[f"{job('doc-4', 3).stem}.custody.json"]  # as if the attempt died before its proof
    query = ExportQuery(calls=(CALL,))
    plan = await plan_export(world.archive, await selected(world, query), query)
    assert f"{job('doc-4', 3).stem}.mp4" in plan.recordings[0]["notExported"]
    assert not [f for f in plan.files if f.blob.startswith(job("doc-4", 3).stem)]


async def test_the_bag_written_from_the_in_memory_archive_validates(world: World, tmp_path: Path) -> None:
    query = ExportQuery(calls=(CALL, OTHER))
    plan = await plan_export(world.archive, await selected(world, query), query)
    bag = tmp_path / "bag"
    seen: list[tuple[int, int]] = []
    result = await export_bag(
        world.archive,
        plan,
        FolderBag(bag),
        query=query,
        actor="ana",
        archive_url="u",
        now=NOW,
        progress=lambda d, t: seen.append((d, t)),
    )
    bagit.Bag(str(bag)).validate()
    assert (result.recordings, result.chunks, result.files) == (2, 3, 13)
    assert seen[-1][0] == seen[-1][1] == sum(f.size or 0 for f in plan.files)  # progress reached its total
    assert json.loads((bag / "index.json").read_text())["exportId"] == result.export_id
    assert result.access_record in world.archive.blobs and world.archive.changed == []
    with pytest.raises(OperatorInputError, match="nothing archived matches"):
        await export_bag(
            world.archive,
            await plan_export(world.archive, [], query),
            FolderBag(tmp_path / "x"),
            query=query,
            actor="ana",
            archive_url="u",
        )
