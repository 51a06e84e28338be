"""The worker against in-memory edges: every path of an attempt and of the message decision, in milliseconds.

The same paths run against Azurite and the simulator in tests/e2e; here they
run without I/O, so they can be many and exact (request by request).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from recording_pipeline.app.attempt import STEPS, archive_chunk
from recording_pipeline.app.worker import ChunkWorker, Outcome, handle_chunk_message
from recording_pipeline.core.attempts import AttemptPolicy
from recording_pipeline.core.custody import SourceAnswer, SourceDeletedRecord, Verification
from recording_pipeline.core.errors import AcsTransientError, ArchiveIntegrityError
from recording_pipeline.core.jobs import encode_job
from recording_pipeline.core.lifecycle import Step
from recording_pipeline.core.naming import (
    custody_name,
    day_entry,
    lock_name,
    lost_name,
    manifest_name,
    participant_entry,
    quarantine_name,
    source_deleted_name,
)
from recording_pipeline.core.quarantine import job_text_of
from recording_pipeline.core.state import ChunkState, RecordingState
from recording_pipeline.core.verification import SINGLE_PUT, SOURCE_SIZE, SOURCE_SIZE_DECLARED
from tests.support.world import BLOCK, NOW, World, job


def test_every_step_but_done_has_one_function_that_performs_it() -> None:
    assert set(STEPS) == set(Step) - {Step.DONE}
    assert len(set(STEPS.values())) == len(STEPS)


async def test_a_fresh_chunk_is_copied_proved_and_only_then_deleted(world: World) -> None:
    media = world.add()
    proof_at_delete: list[bool] = []
    world.acs.on_delete = lambda _doc: proof_at_delete.append(custody_name(job().stem) in world.archive.blobs)
    assert await archive_chunk(job(), world.worker) is Outcome.ARCHIVED
    assert proof_at_delete == [True], "the DELETE came before the chain-of-custody record"
    blob = world.archive.blobs[world.media_blob()]
    assert blob.data == media and blob.content_type == "video/mp4" and blob.tags == {"kind": "media"}
    assert blob.metadata["sha256"] == hashlib.sha256(media).hexdigest()
    custody = world.custody()
    assert (custody.size, custody.sha256, custody.media_blob) == (
        len(media),
        blob.metadata["sha256"],
        world.media_blob(),
    )
    assert custody.verification is Verification.WHILE_STAGING and custody.source.content_length == len(media)
    assert custody.source.url == "https://x.asm.skype.com/v1/objects/doc-1/content/video"
    assert [b.size for b in custody.blocks] == [BLOCK] * 5 + [17]
    assert custody.source.etag == '"doc-1"' and custody.chunk.document_id == "doc-1"
    deleted = SourceDeletedRecord.model_validate_json(world.archive.blobs[source_deleted_name(job().stem)].data)
    assert deleted.answer is SourceAnswer.DELETED and deleted.deleted_at == NOW
    manifest = world.manifest()
    entry = manifest.chunk(0)
    assert entry is not None and entry.state is ChunkState.ARCHIVED and entry.source_deleted_at == NOW
    assert entry.size == len(media) and manifest.state is RecordingState.COMPLETE
    participants = [n for n in world.archive.blobs if n.startswith("_index/participants/")]
    assert len(participants) == 2
    assert world.archive.changed == [], "the archive container is write-once"
    assert world.state.log == [("put", manifest_name(job().call_id, "r-rec1"))], (
        "one state write: no lock, a quick copy"
    )


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
    assert world.archive.blobs[world.media_blob()].data == media


async def test_a_resumed_copy_is_hashed_from_the_archive_before_its_proof_is_written(world: World) -> None:
    media = world.add(size=6 * BLOCK)
    world.claimed_earlier()
    for index in range(3):  # an earlier attempt claimed the chunk, staged three blocks and died
        await world.archive.stage_block(
            world.media_blob(), f"blk-{BLOCK:010d}-{index:08d}", media[index * BLOCK : (index + 1) * BLOCK]
        )
    assert await archive_chunk(job(), world.worker) is Outcome.ARCHIVED
    [(_method, _doc, offset)] = [r for r in world.acs.requests if r[0] == "GET-media"]
    assert offset == 3 * BLOCK
    assert "sha256" not in world.archive.blobs[world.media_blob()].metadata  # not known when it was committed
    custody = world.custody()
    assert custody.sha256 == hashlib.sha256(media).hexdigest() and custody.verification is Verification.READ_BACK
    assert custody.resumed_from_byte == 3 * BLOCK


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _left_streamed_put(world: World, data: bytes, size: int) -> None:
    """What an attempt that died after its streamed Put Blob (or refused it on the service's MD5) left: the blob
    and its claim, no custody record, no sha256 on the blob (its headers went before its body)."""
    world.claimed_earlier()
    metadata = {SOURCE_SIZE_DECLARED: "true", SOURCE_SIZE: str(size), SINGLE_PUT: "true"}
    assert await world.archive.put_media_stream(world.media_blob(), _body(data), size, "video/mp4", metadata, {})


async def test_a_streamed_put_blob_another_attempt_left_is_proved_against_what_acs_serves(world: World) -> None:
    media = world.add(size=2 * BLOCK + 3)  # within the single-put limit
    await _left_streamed_put(world, media, len(media))
    assert await archive_chunk(job(), world.worker) is Outcome.ARCHIVED
    assert [offset for method, _doc, offset in world.acs.requests if method == "GET-media"] == [0]
    custody = world.custody()
    assert custody.verification is Verification.READ_BACK_AND_SOURCE
    assert custody.sha256 == hashlib.sha256(media).hexdigest() and "doc-1" in world.acs.deleted


async def test_a_streamed_put_blob_that_differs_from_acs_is_never_proved_and_acs_keeps_its_copy(world: World) -> None:
    media = world.add(size=2 * BLOCK + 3)
    changed = bytearray(media)
    changed[BLOCK] ^= 1  # a bit the service stored differently from what was streamed
    await _left_streamed_put(world, bytes(changed), len(media))
    with pytest.raises(ArchiveIntegrityError, match="differs from the file ACS serves"):
        await archive_chunk(job(), world.worker)
    assert custody_name(job().stem) not in world.archive.blobs
    assert "doc-1" not in world.acs.deleted


async def test_a_streamed_put_blob_left_unproved_when_acs_no_longer_has_the_file_says_so_in_its_proof(
    world: World,
) -> None:
    media = world.add(size=2 * BLOCK + 3)
    await _left_streamed_put(world, media, len(media))
    world.acs.recordings.pop("doc-1")  # expired at ACS; the archived metadata document is what the attempt reads
    await archive_chunk(job(), world.worker)
    custody = world.custody()
    assert custody.verification is Verification.READ_BACK_SOURCE_GONE
    assert custody.sha256 == hashlib.sha256(media).hexdigest()


async def test_a_chunk_acs_no_longer_has_is_recorded_lost(world: World) -> None:
    assert await archive_chunk(job(), world.worker) is Outcome.LOST
    assert lost_name(job().stem) in world.archive.blobs
    assert world.manifest().state is RecordingState.LOST


async def test_a_404_after_another_attempt_archived_it_is_not_lost(world: World) -> None:
    world.add()
    await archive_chunk(job(), world.worker)
    del world.archive.blobs[f"{job().stem}.metadata.json"]  # this duplicate looked before the metadata was written
    assert await archive_chunk(job(), world.worker) is Outcome.ALREADY_ARCHIVED
    assert not [n for n in world.archive.blobs if n.startswith("_lost/")]


async def test_an_archived_chunk_whose_delete_was_not_recorded_is_deleted_and_recorded_once(world: World) -> None:
    """Died after the DELETE, before its record: the next attempt repeats the DELETE (404) and records it."""
    world.add()
    await archive_chunk(job(), world.worker)
    del world.archive.blobs[source_deleted_name(job().stem)]
    assert await archive_chunk(job(), world.worker) is Outcome.ALREADY_ARCHIVED
    again = SourceDeletedRecord.model_validate_json(world.archive.blobs[source_deleted_name(job().stem)].data)
    assert again.answer is SourceAnswer.ALREADY_GONE
    assert world.archive.changed == [] and world.acs.count("GET-media") == 1


async def test_a_chunk_held_by_a_live_worker_is_left_to_it_and_checked_again_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recording_pipeline.app.chunk_steps as steps

    monkeypatch.setattr(steps, "LEASE_WAIT_SECONDS", 0.01)
    world.add()
    world.claimed_earlier()
    world.state.leased[lock_name(job().stem)] = asyncio.Event()
    assert await archive_chunk(job(), world.worker) is Outcome.IN_PROGRESS_ELSEWHERE
    assert world.acs.count("GET-media") == 0
    assert [delay for _text, delay in world.queue.messages] == [300]


async def test_without_a_size_from_acs_the_copy_is_kept_and_the_source_too(world: World) -> None:
    world.add(declare_size=False)
    assert await archive_chunk(job(), world.worker) is Outcome.ARCHIVED
    assert world.acs.count("DELETE") == 0
    assert world.custody().source.content_length is None
    assert source_deleted_name(job().stem) not in world.archive.blobs
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


async def test_a_chunk_killed_after_its_proof_is_finished_on_the_deciding_delivery_not_quarantined(
    world: World,
) -> None:
    """A scale-in or a restart can end an attempt between the custody record and the DELETE; near the deadline
    the deciding delivery would quarantine the job, but what is left is short, so it is done."""
    world.add()
    assert await archive_chunk(job(), world.worker, first_delivery=True) is Outcome.ARCHIVED
    world.acs.deleted.clear()  # as if the attempt had died before its DELETE
    world.worker.clock = lambda: NOW + timedelta(hours=23, minutes=45)
    assert await handle_chunk_message(encode_job(job()), 5, world.worker) is Outcome.ALREADY_ARCHIVED
    assert "doc-1" in world.acs.deleted and world.acs.count("GET-media") == 1
    assert world.queue.poison == [] and quarantine_name(job().stem) not in world.state.blobs


async def test_near_the_deadline_the_job_is_quarantined_twice(world: World) -> None:
    world.add()
    world.acs.fail_next_metadata = 100
    world.worker.clock = lambda: NOW + timedelta(hours=23, minutes=45)
    assert await handle_chunk_message(encode_job(job()), 4, world.worker) is None
    [poison] = world.queue.poison
    record = json.loads(world.state.blobs[quarantine_name(job().stem)].data)
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


# --- what an attempt sends: nothing it already knows ---------------------------------------------------------


async def test_the_first_delivery_of_a_one_block_chunk_asks_nothing_it_knows(world: World) -> None:
    """It claims the chunk by creating its metadata document, so it knows there is no media, no staged block and
    no record yet: no look-up, no block list, no lease; the one block is the blob, created by one Put Blob; one
    manifest write."""
    world.add(size=BLOCK)
    assert await archive_chunk(job(), world.worker, first_delivery=True) is Outcome.ARCHIVED
    stem = job().stem
    assert world.archive.log == [
        ("put", f"{stem}.metadata.json"),
        ("put", world.media_blob()),
        ("put", custody_name(stem)),
        ("put", participant_entry("8:acs:a", job().call_id, "r-rec1")),
        ("put", participant_entry("4:+1555", job().call_id, "r-rec1")),
        ("put", source_deleted_name(stem)),
        ("put", day_entry(NOW.date(), job().call_id, "r-rec1")),  # filed with the recording's first manifest
    ]
    assert world.state.log == [("put", f"{job().call_id}/r-rec1/manifest.json")]
    assert world.acs.requests == [
        ("GET-metadata", "doc-1", 0),
        ("GET-media", "doc-1", 0),
        ("DELETE", "doc-1", 0),
    ]


@pytest.mark.parametrize("lease_after", [0.0, 60.0])
async def test_a_claimed_copy_takes_the_lease_only_if_it_runs_long(
    world: World, monkeypatch: pytest.MonkeyPatch, lease_after: float
) -> None:
    """Halfway through the claim's window a copy still running takes the lease; a quick one never asks."""
    import recording_pipeline.app.chunk_steps as steps

    monkeypatch.setattr(steps, "LEASE_AFTER_SECONDS", lease_after)
    world.acs.piece_delay = 0.001  # long enough for a timer of 0 s to fire mid-copy
    world.add(size=3 * BLOCK)
    assert await archive_chunk(job(), world.worker, first_delivery=True) is Outcome.ARCHIVED
    lock_requests = [kind for kind, name in world.state.log if name == lock_name(job().stem)]
    assert lock_requests == (["put", "lease", "lease"] if lease_after == 0 else [])
    assert ("block-list", world.media_blob()) not in world.archive.log  # nothing staged before a claim


async def test_a_claimer_that_cannot_take_the_lease_copies_on_and_archives_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker holds the lease (storage refused the claimer's renewals, say): both may copy; one blob."""
    import recording_pipeline.app.chunk_steps as steps

    monkeypatch.setattr(steps, "LEASE_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(steps, "LEASE_WAIT_SECONDS", 0.01)
    world.acs.piece_delay = 0.001
    media = world.add(size=3 * BLOCK)
    world.state.leased[lock_name(job().stem)] = asyncio.Event()
    assert await archive_chunk(job(), world.worker, first_delivery=True) is Outcome.ARCHIVED
    assert world.archive.blobs[world.media_blob()].data == media and world.archive.changed == []


@pytest.mark.parametrize(("ago", "left"), [(timedelta(seconds=10), True), (timedelta(minutes=2), False)])
async def test_a_duplicate_leaves_a_fresh_claim_to_its_claimer_and_takes_over_a_stale_one(
    world: World, ago: timedelta, left: bool
) -> None:
    """A fresh claimer may be copying a one-block chunk without a lease; a stale one finished, leased or died."""
    world.add(size=BLOCK)
    world.claimed_earlier(ago=ago)
    outcome = await archive_chunk(job(), world.worker, first_delivery=True)
    if left:
        assert outcome is Outcome.IN_PROGRESS_ELSEWHERE and world.acs.count("GET-media") == 0
        assert [delay for _text, delay in world.queue.messages] == [300]
    else:
        assert outcome is Outcome.ARCHIVED and world.acs.count("GET-media") == 1


async def test_chunks_of_one_recording_in_one_process_write_the_manifest_once_each(world: World) -> None:
    for doc in ("doc-a", "doc-b", "doc-c"):
        world.add(doc, size=BLOCK)
    jobs = [job(doc, index, last=index == 2) for index, doc in enumerate(("doc-a", "doc-b", "doc-c"))]
    outcomes = await asyncio.gather(*(archive_chunk(j, world.worker, first_delivery=True) for j in jobs))
    assert set(outcomes) == {Outcome.ARCHIVED}
    manifest = f"{job().call_id}/r-rec1/manifest.json"
    requests = [kind for kind, name in world.state.log if name == manifest]
    # One write per chunk. The first chunk's write only creates; a read comes first only when another chunk
    # reached the manifest before it (the order of the three is up to the scheduler).
    assert requests.count("put") == 3 and requests in (["put"] * 3, ["get", "put", "put", "put"])
    assert world.manifest().state is RecordingState.COMPLETE


async def test_a_manifest_written_elsewhere_meanwhile_is_read_before_it_is_written(world: World) -> None:
    """Another instance wrote the manifest since this process last did: the remembered version fails its
    condition and the write starts over from what is there, so neither chunk is lost from the manifest."""
    world.add("doc-a", size=BLOCK)
    world.add("doc-b", size=BLOCK)
    await archive_chunk(job("doc-a", 0, last=False), world.worker, first_delivery=True)
    elsewhere = ChunkWorker(
        world.acs, world.archive, world.state, world.queue, BLOCK, 2, AttemptPolicy(4, 300), None, clock=lambda: NOW
    )
    await archive_chunk(job("doc-b", 1, last=False), elsewhere, first_delivery=True)  # another instance
    world.add("doc-c", size=BLOCK)
    await archive_chunk(job("doc-c", 2), world.worker, first_delivery=True)  # back here: remembered version stale
    manifest = world.manifest()
    assert sorted(str(c.document_id) for c in manifest.chunks.values()) == ["doc-a", "doc-b", "doc-c"]


async def test_a_participant_and_a_day_are_indexed_once_per_recording_by_a_process(world: World) -> None:
    """Index entries are write-once: one this process wrote is there for good, so later chunks skip it."""
    for index, doc in enumerate(("doc-a", "doc-b")):
        world.add(doc, size=BLOCK)
        await archive_chunk(job(doc, index, last=index == 1), world.worker, first_delivery=True)
    index_writes = [name for kind, name in world.archive.log if kind == "put" and name.startswith("_index/")]
    expected = [participant_entry(p, job().call_id, "r-rec1") for p in ("8:acs:a", "4:+1555")]
    assert sorted(index_writes) == sorted([*expected, day_entry(NOW.date(), job().call_id, "r-rec1")])


@pytest.mark.parametrize(
    ("claimed_by", "outcome"), [("msg-1", Outcome.ARCHIVED), ("msg-2", Outcome.IN_PROGRESS_ELSEWHERE)]
)
async def test_a_fresh_claim_of_an_earlier_delivery_of_the_same_message_is_taken_over(
    world: World, claimed_by: str, outcome: Outcome
) -> None:
    """The host redelivers a message only once its earlier delivery has ended: that claimer is gone."""
    world.add(size=BLOCK)
    world.claimed_earlier(ago=timedelta(seconds=10), by=claimed_by)
    assert await handle_chunk_message(encode_job(job()), 2, world.worker, message_id="msg-1") is outcome
