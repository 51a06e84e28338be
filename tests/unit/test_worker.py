"""The worker against in-memory edges: every path of an attempt and of the message decision, in milliseconds.

The same paths run against Azurite and the simulator in tests/e2e; here they
run without I/O, so they can be many and exact (request by request).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from recording_pipeline.app.worker import ChunkWorker, Outcome, archive_chunk, handle_chunk_message
from recording_pipeline.core.attempts import AttemptPolicy
from recording_pipeline.core.errors import AcsTransientError
from recording_pipeline.core.jobs import RecordingChunk, encode_job
from recording_pipeline.core.naming import lost_name, manifest_name, quarantine_name
from recording_pipeline.core.quarantine import job_text_of
from recording_pipeline.core.state import ChunkState, Manifest, RecordingState
from tests.support.fakes import FakeAcs, FakeArchive, FakeQueue, FakeRecording

BLOCK = 64 * 1024
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
CALL = "cafe0000-0000-0000-0000-000000000000"


def job(
    doc: str = "doc-1", index: int = 0, last: bool = True, requeues: int = 0, delete: bool = True
) -> RecordingChunk:
    base = f"https://x.asm.skype.com/v1/objects/{doc}"
    return RecordingChunk(
        event_id="evt-1",
        event_time=NOW,
        expires_at=NOW + timedelta(hours=24),
        call_id=CALL,
        recording_id="rec1",
        recording_key="r-rec1",
        chunk_index=index,
        document_id=doc,
        end_reason="SessionEnded" if last else "ChunkMaximumSizeExceeded",
        content_url=f"{base}/content/video",
        metadata_url=f"{base}/content/acsmetadata",
        delete_url=base if delete else None,
        requeues=requeues,
    )


def metadata(doc: str, participants: tuple[str, ...] = ("8:acs:a", "4:+1555")) -> bytes:
    return json.dumps(
        {
            "chunkDocumentId": doc,
            "recordingInfo": {"format": "mp4"},
            "participants": [{"participantId": p} for p in participants],
        }
    ).encode()


class World:
    def __init__(self) -> None:
        self.acs, self.store, self.queue = FakeAcs(), FakeArchive(), FakeQueue()
        self.worker = ChunkWorker(
            self.acs, self.store, self.queue, BLOCK, 2, AttemptPolicy(4, 300), None, clock=lambda: NOW
        )

    def add(self, doc: str = "doc-1", size: int = 5 * BLOCK + 17, declare_size: bool = True) -> bytes:
        media = bytes((i * 7 + len(doc)) % 251 for i in range(size))
        self.acs.recordings[doc] = FakeRecording(media, metadata(doc), declare_size)
        return media

    def manifest(self) -> Manifest:
        blob = self.store.blobs[manifest_name(CALL, "r-rec1")]
        return Manifest.from_json(json.loads(blob.data))

    def media_blob(self, doc: str = "doc-1", index: int = 0) -> str:
        return f"{CALL}/r-rec1/{index:05d}-{doc}.mp4"


@pytest.fixture
def world() -> World:
    return World()


async def test_a_fresh_chunk_is_copied_verified_recorded_and_then_deleted(world: World) -> None:
    media = world.add()
    at_delete: dict[str, object] = {}

    def look(document: str) -> None:
        at_delete["verified"] = world.store.blobs[world.media_blob()].metadata.get("verified_at")
        entry = world.manifest().chunk(0)
        at_delete["recorded"] = entry.state if entry else None

    world.acs.on_delete = look
    assert await archive_chunk(job(), world.worker) is Outcome.ARCHIVED
    assert at_delete == {"verified": NOW.isoformat(), "recorded": ChunkState.ARCHIVED}
    blob = world.store.blobs[world.media_blob()]
    assert blob.data == media and blob.content_type == "video/mp4"
    manifest = world.manifest()
    entry = manifest.chunk(0)
    assert entry is not None and entry.state is ChunkState.ARCHIVED and entry.source_deleted_at == NOW
    assert entry.size == len(media) and manifest.state is RecordingState.COMPLETE
    assert "doc-1" in world.acs.deleted
    participants = [n for n in world.store.blobs if n.startswith("_index/participants/")]
    assert len(participants) == 2


async def test_an_archived_chunk_is_never_downloaded_again(world: World) -> None:
    world.add()
    await archive_chunk(job(), world.worker)
    world.acs.deleted.clear()  # as if the DELETE had not been recorded
    gets = world.acs.count("GET-media")
    assert await archive_chunk(job(), world.worker) is Outcome.ALREADY_ARCHIVED
    assert world.acs.count("GET-media") == gets
    assert "doc-1" in world.acs.deleted


async def test_a_broken_download_resumes_at_the_first_unstaged_block(world: World) -> None:
    media = world.add(size=10 * BLOCK + 5)
    world.acs.cut_next_media = [4 * BLOCK + 100]
    assert await archive_chunk(job(), world.worker) is Outcome.ARCHIVED
    offsets = [offset for method, _doc, offset in world.acs.requests if method == "GET-media"]
    assert offsets[0] == 0 and offsets[1] % BLOCK == 0 and offsets[1] >= BLOCK
    assert world.store.blobs[world.media_blob()].data == media


async def test_a_resumed_copy_is_hashed_from_the_archive_before_the_delete(world: World) -> None:
    media = world.add(size=6 * BLOCK)
    for index in range(3):  # an earlier attempt staged three blocks and died
        await world.store.stage_block(
            world.media_blob(), f"blk-{BLOCK:010d}-{index:08d}", media[index * BLOCK : (index + 1) * BLOCK]
        )
    assert await archive_chunk(job(), world.worker) is Outcome.ARCHIVED
    [(_method, _doc, offset)] = [r for r in world.acs.requests if r[0] == "GET-media"]
    assert offset == 3 * BLOCK
    import hashlib

    assert world.store.blobs[world.media_blob()].metadata["sha256"] == hashlib.sha256(media).hexdigest()


async def test_a_chunk_acs_no_longer_has_is_recorded_lost(world: World) -> None:
    assert await archive_chunk(job(), world.worker) is Outcome.LOST
    assert lost_name(job().stem) in world.store.blobs
    assert world.manifest().state is RecordingState.LOST


async def test_a_404_after_another_attempt_archived_it_is_not_lost(world: World) -> None:
    world.add()
    await archive_chunk(job(), world.worker)
    del world.store.blobs[f"{job().stem}.metadata.json"]  # this duplicate looked before the metadata was written
    assert await archive_chunk(job(), world.worker) is Outcome.ALREADY_ARCHIVED
    assert not [n for n in world.store.blobs if n.startswith("_lost/")]


async def test_a_chunk_held_by_a_live_worker_is_left_to_it_and_checked_again_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recording_pipeline.app.chunk_steps as steps

    monkeypatch.setattr(steps, "LEASE_WAIT_SECONDS", 0.01)
    world.add()
    world.store.leased[f"{job().stem}.metadata.json"] = __import__("asyncio").Event()
    await world.store.create(f"{job().stem}.metadata.json", metadata("doc-1"), "application/json")
    assert await archive_chunk(job(), world.worker) is Outcome.IN_PROGRESS_ELSEWHERE
    assert world.acs.count("GET-media") == 0
    assert [delay for _text, delay in world.queue.messages] == [300]


async def test_without_a_size_from_acs_the_copy_is_kept_and_the_source_too(world: World) -> None:
    world.add(declare_size=False)
    assert await archive_chunk(job(), world.worker) is Outcome.ARCHIVED
    assert world.acs.count("DELETE") == 0
    entry = world.manifest().chunk(0)
    assert entry is not None and entry.source_kept_reason == "ACS did not state the file's size"


async def test_the_oldest_events_have_nothing_to_delete(world: World) -> None:
    world.add()
    assert await archive_chunk(job(delete=False), world.worker) is Outcome.ARCHIVED
    assert world.acs.count("DELETE") == 0


# --- the message decision -------------------------------------------------------------------------------------


async def test_a_failure_before_the_last_attempt_is_raised_for_the_host(world: World) -> None:
    world.add()
    world.acs.fail_next_metadata = 100
    with pytest.raises(AcsTransientError):
        await handle_chunk_message(encode_job(job()), 3, world.worker)
    assert world.queue.messages == [] and world.queue.poison == []


async def test_a_failure_on_the_last_attempt_comes_back_later_as_a_fresh_message(world: World) -> None:
    world.add()
    world.acs.fail_next_metadata = 100
    assert await handle_chunk_message(encode_job(job()), 4, world.worker) is None
    [(text, delay)] = world.queue.messages
    assert delay == 300 and json.loads(text)["requeues"] == 1
    entry = world.manifest().chunk(0)
    assert entry is not None and entry.state is ChunkState.PENDING and entry.requeues == 1


async def test_a_delivery_after_an_unanswered_attempt_decides_without_work(world: World) -> None:
    world.add()
    assert await handle_chunk_message(encode_job(job()), 5, world.worker) is None
    assert world.acs.requests == [] and len(world.queue.messages) == 1


async def test_near_the_deadline_the_job_is_quarantined_twice(world: World) -> None:
    world.add()
    world.acs.fail_next_metadata = 100
    world.worker.clock = lambda: NOW + timedelta(hours=23, minutes=45)
    assert await handle_chunk_message(encode_job(job()), 4, world.worker) is None
    [poison] = world.queue.poison
    record = json.loads(world.store.blobs[quarantine_name(job().stem)].data)
    assert json.loads(poison) == record and record["attempts"] == 4
    assert job_text_of(poison) is not None
    entry = world.manifest().chunk(0)
    assert entry is not None and entry.state is ChunkState.FAILED


async def test_an_undecodable_message_is_quarantined_as_it_was(world: World) -> None:
    assert await handle_chunk_message("not a job", 1, world.worker) is None
    [poison] = world.queue.poison
    assert json.loads(poison)["original"] == "not a job" and json.loads(poison)["job"] is None


async def test_an_attempt_that_runs_out_of_time_after_progress_continues_at_once(world: World) -> None:
    world.add(size=40 * BLOCK)
    world.acs.piece_delay = 0.02  # ten pieces: 0.2 s in all
    world.worker.attempt_seconds = 0.08
    assert await handle_chunk_message(encode_job(job()), 1, world.worker) is None
    [(text, delay)] = world.queue.messages
    assert delay == 0 and json.loads(text)["requeues"] == 0
