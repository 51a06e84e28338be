"""The ArchiveStore contract, asserted alike of the in-memory fake and of BlobArchive on Azurite."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import Azurite
from recording_pipeline.core.errors import BlobTooLargeError, StorageError
from recording_pipeline.core.ports import ContainerStore, StagedBlock
from recording_pipeline.edges.archive import BlobArchive
from tests.support.fakes import FakeArchive

JSON = "application/json"
TAGS = {"kind": "media"}


@pytest.fixture(params=["fake", "azurite"])
async def archive(request: pytest.FixtureRequest) -> AsyncIterator[ContainerStore]:
    if request.param == "fake":
        yield FakeArchive()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    store = BlobArchive(BlobServiceClient.from_connection_string(azurite.connection_string), f"c-{uuid.uuid4().hex}")
    await store.ensure()
    yield store
    await store.close()


async def test_create_writes_once_and_never_overwrites(archive: ContainerStore) -> None:
    assert await archive.create("a/b.json", b'{"v": 1}', JSON, {"k": "v"}) is True
    assert await archive.create("a/b.json", b'{"v": 2}', JSON) is False
    found = await archive.read_bytes("a/b.json")
    assert found is not None and found[0] == b'{"v": 1}'
    info = await archive.info("a/b.json")
    assert info is not None and (info.size, info.metadata) == (8, {"k": "v"}) and info.etag


async def test_absent_blobs_read_as_none(archive: ContainerStore) -> None:
    assert await archive.info("nope") is None
    assert await archive.read_bytes("nope") is None
    assert await archive.read_json("nope") is None
    await archive.delete("nope")  # absent counts as removed


async def test_a_small_read_has_a_limit(archive: ContainerStore) -> None:
    await archive.create("big", b"x" * 100, "application/octet-stream")
    with pytest.raises(BlobTooLargeError, match="more than the 10 expected"):
        await archive.read_bytes("big", limit=10)


async def test_update_json_lets_every_concurrent_writer_land(archive: ContainerStore) -> None:
    def add(doc: object) -> object:
        current = doc if isinstance(doc, dict) else {"n": 0}
        return {"n": current["n"] + 1}

    await asyncio.gather(*(archive.update_json("count.json", add) for _ in range(8)))
    found = await archive.read_json("count.json")
    assert found is not None and found[0] == {"n": 8}
    unchanged = await archive.update_json("count.json", lambda doc: None)  # None from mutate: no write
    assert unchanged.doc == {"n": 8} and unchanged.etag == found[1]


async def test_staged_blocks_commit_once_into_one_blob(archive: ContainerStore) -> None:
    for index, data in enumerate((b"a" * 10, b"b" * 7)):
        await archive.stage_block("m.mp4", f"blk-{index:04d}", data)
    assert await archive.uncommitted_blocks("m.mp4") == [StagedBlock("blk-0000", 10), StagedBlock("blk-0001", 7)]
    assert await archive.commit_new("m.mp4", ["blk-0000", "blk-0001"], "video/mp4", {"sha256": "x"}, TAGS) is True
    assert await archive.committed_blocks("m.mp4") == [StagedBlock("blk-0000", 10), StagedBlock("blk-0001", 7)]
    assert await archive.uncommitted_blocks("m.mp4") == []
    assert await archive.commit_new("m.mp4", ["blk-0000"], "video/mp4", {}, {}) is False
    assert await archive.sha256("m.mp4") == (hashlib.sha256(b"a" * 10 + b"b" * 7).hexdigest(), 17)


async def test_one_block_media_is_created_whole_once_with_its_md5_checked(archive: ContainerStore) -> None:
    data = b"one block of media"
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    with pytest.raises(StorageError):  # the service checks the Content-MD5 on arrival
        await archive.create_media(
            "m.mp4", data, hashlib.md5(b"other", usedforsecurity=False).digest(), "video/mp4", {}, TAGS
        )
    assert await archive.info("m.mp4") is None
    assert await archive.create_media("m.mp4", data, md5, "video/mp4", {"sha256": "x"}, TAGS) is True
    assert (
        await archive.create_media(
            "m.mp4", b"other", hashlib.md5(b"other", usedforsecurity=False).digest(), "video/mp4", {}, {}
        )
        is False
    )
    info = await archive.info("m.mp4")
    assert info is not None and (info.size, info.metadata) == (len(data), {"sha256": "x"})
    assert await archive.committed_blocks("m.mp4") == []  # one Put Blob leaves no block list
    assert await archive.sha256("m.mp4") == (hashlib.sha256(data).hexdigest(), len(data))


async def test_a_block_list_naming_an_unstaged_block_is_refused(archive: ContainerStore) -> None:
    await archive.stage_block("m.mp4", "blk-0000", b"a")
    with pytest.raises(StorageError):
        await archive.commit_new("m.mp4", ["blk-0000", "blk-0001"], "video/mp4", {}, {})
    assert await archive.info("m.mp4") is None


async def test_streamed_and_hashed_with_progress(archive: ContainerStore) -> None:
    data = bytes(range(256)) * 5000
    await archive.create("media.bin", data, "application/octet-stream")
    pieces = [piece async for piece in archive.stream("media.bin")]
    assert b"".join(pieces) == data
    seen: list[int] = []
    assert await archive.sha256("media.bin", seen.append) == (hashlib.sha256(data).hexdigest(), len(data))
    assert sum(seen) == len(data)


async def test_listing_by_prefix_in_name_order(archive: ContainerStore) -> None:
    for name in ("b/2", "a/1", "b/1", "ba/1"):
        await archive.create(name, b"", JSON)
    assert [n async for n in archive.list_names("b/")] == ["b/1", "b/2"]
    assert [n async for n in archive.list_names("")] == ["a/1", "b/1", "b/2", "ba/1"]


async def test_delete_removes(archive: ContainerStore) -> None:
    await archive.create("gone", b"x", JSON)
    await archive.delete("gone")
    assert await archive.info("gone") is None


async def test_a_lease_is_held_by_one_at_a_time_and_its_lock_made_on_first_use(archive: ContainerStore) -> None:
    async with archive.lease("_locks/a", 15, wait=0) as first:
        assert first is True
        async with archive.lease("_locks/a", 15, wait=0) as second:
            assert second is False
    async with archive.lease("_locks/a", 15, wait=0) as again:
        assert again is True
    assert await archive.info("_locks/a") is not None
