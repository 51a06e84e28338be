"""app.manifests.ManifestWriter, the one writer of a recording's manifest: one conditional write per chunk from the
version it wrote last, a read only when another writer came in between, and never a chunk moved backwards."""

from __future__ import annotations

import asyncio
import json

import pytest

import recording_pipeline.app.manifests as manifests_module
from recording_pipeline.app.manifests import ManifestWriter
from recording_pipeline.core.naming import manifest_name
from recording_pipeline.core.state import ChunkState, ChunkUpdate, Manifest, RecordingState
from tests.support.fakes import FakeArchive
from tests.support.world import CALL, NOW, job

NAME = manifest_name(CALL, "r-rec1")
ARCHIVED = ChunkUpdate(ChunkState.ARCHIVED, size=10, sha256="ab" * 32)


def requests(state: FakeArchive, name: str = NAME) -> list[str]:
    return [kind for kind, blob in state.log if blob == name]


def stored(state: FakeArchive, name: str = NAME) -> Manifest:
    return Manifest.from_json(json.loads(state.blobs[name].data))


async def test_a_new_recording_s_first_chunk_is_written_without_a_read() -> None:
    state = FakeArchive("recordings-state")
    manifest = await ManifestWriter(state).record(job(), ARCHIVED, NOW, new_recording=True)
    assert requests(state) == ["put"]
    assert manifest == stored(state) and manifest.state is RecordingState.COMPLETE


async def test_without_the_hint_the_first_write_reads_first() -> None:
    state = FakeArchive("recordings-state")
    await ManifestWriter(state).record(job(), ARCHIVED, NOW)
    assert requests(state) == ["get", "put"]


async def test_the_next_chunk_is_one_conditional_write_from_the_version_written_last() -> None:
    state = FakeArchive("recordings-state")
    writer = ManifestWriter(state)
    await writer.record(job("doc-a", 0, last=False), ARCHIVED, NOW, new_recording=True)
    await writer.record(job("doc-b", 1), ARCHIVED, NOW)
    assert requests(state) == ["put", "put"]
    assert stored(state).count(ChunkState.ARCHIVED) == 2 and stored(state).state is RecordingState.COMPLETE


async def test_another_writer_in_between_costs_a_read_and_both_chunks_land() -> None:
    state = FakeArchive("recordings-state")
    mine, other = ManifestWriter(state), ManifestWriter(state)  # two processes
    await mine.record(job("doc-a", 0, last=False), ARCHIVED, NOW, new_recording=True)
    await other.record(job("doc-b", 1, last=False), ARCHIVED, NOW)
    await mine.record(job("doc-c", 2), ARCHIVED, NOW)
    # mine's guess fails its condition, so it reads what the other wrote and writes again.
    assert requests(state) == ["put", "get", "put", "put", "get", "put"]
    assert [c.index for c in stored(state).chunks.values()] == [0, 1, 2]
    assert stored(state).state is RecordingState.COMPLETE


async def test_a_late_duplicate_never_moves_a_chunk_backwards() -> None:
    state = FakeArchive("recordings-state")
    writer = ManifestWriter(state)
    await writer.record(job(), ARCHIVED, NOW, new_recording=True)
    after = await writer.record(job(), ChunkUpdate(ChunkState.PENDING, last_error="late"), NOW)
    entry = after.chunk(0)
    assert entry is not None and entry.state is ChunkState.ARCHIVED and entry.last_error is None
    assert after == stored(state)


async def test_concurrent_chunks_of_one_recording_all_land_one_write_at_a_time() -> None:
    state = FakeArchive("recordings-state")
    writer = ManifestWriter(state)
    docs = [job(f"doc-{i}", i, last=i == 7) for i in range(8)]
    await asyncio.gather(*(writer.record(j, ARCHIVED, NOW, new_recording=j.chunk_index == 0) for j in docs))
    manifest = stored(state)
    assert manifest.count(ChunkState.ARCHIVED) == 8 and manifest.state is RecordingState.COMPLETE
    assert "get" not in requests(state), "one writer at a time per manifest: no write lost its condition"
    assert writer._locks == {}, "the per-manifest locks are let go once nobody waits on them"


async def test_the_versions_a_process_remembers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests_module, "REMEMBERED", 2)
    state = FakeArchive("recordings-state")
    writer = ManifestWriter(state)
    for recording in ("a", "b", "c"):
        await writer.record(job(recording=recording), ARCHIVED, NOW, new_recording=True)
    await writer.record(job(recording="a"), ARCHIVED, NOW)  # forgotten: read again
    await writer.record(job(recording="c"), ARCHIVED, NOW)  # remembered: no read
    assert requests(state, manifest_name(CALL, "r-a")) == ["put", "get", "put"]
    assert requests(state, manifest_name(CALL, "r-c")) == ["put", "put"]
