"""The ArchiveStore contract, asserted alike of the in-memory fake and of BlobArchive on Azurite (the streamed Put
Blob and the whole file's Content-MD5 included); then what only BlobArchive does: the MD5s it puts on the wire."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import Azurite
from recording_pipeline.core.errors import BlobTooLargeError, StorageError
from recording_pipeline.core.ports import ContainerStore, StagedBlock
from recording_pipeline.edges.archive import BlobArchive, block_md5_wanted
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


async def test_a_listing_walked_page_by_page_resumes_from_a_kept_marker(archive: ContainerStore) -> None:
    names = [f"c{i % 3}/r/{i:05d}.json" for i in range(7)] + ["_index/x", "d/only"]
    for name in names:
        await archive.create(name, b"{}", JSON)
    walked: list[str] = []
    markers: list[str] = []
    marker: str | None = None
    while True:
        page, marker = await archive.list_page("", marker, 3)
        assert len(page) <= 3
        walked.extend(page)
        if marker is None:
            break
        markers.append(marker)
    assert walked == sorted(names) and len(markers) == 2
    again, _ = await archive.list_page("", markers[0], 3)  # a marker kept and used later lists the same page
    assert again == sorted(names)[3:6]
    assert await archive.list_page("c1/", None, 100) == ([n for n in sorted(names) if n.startswith("c1/")], None)
    assert await archive.list_page("nothing/", None, 3) == ([], None)


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


# --- BlobArchive only: the MD5s it sends and keeps ---------------------------------------------------------------


@pytest.fixture
async def blob_archive(azurite: Azurite) -> AsyncIterator[BlobArchive]:
    store = BlobArchive(BlobServiceClient.from_connection_string(azurite.connection_string), f"c-{uuid.uuid4().hex}")
    await store.ensure()
    yield store
    await store.close()


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def test_a_block_md5_is_wanted_only_over_plain_http() -> None:
    assert block_md5_wanted("http://127.0.0.1:10000/devstoreaccount1") is True
    assert block_md5_wanted("https://archive.blob.core.windows.net/") is False
    assert block_md5_wanted("HTTPS://archive.blob.core.windows.net") is False


@pytest.mark.parametrize(("scheme", "sent"), [("https", False), ("http", True)])
async def test_a_staged_block_carries_a_content_md5_only_over_plain_http(scheme: str, sent: bool) -> None:
    """What goes on the wire, seen by a request hook before the request leaves (nothing listens on port 9)."""
    seen: list[dict[str, str]] = []
    service = BlobServiceClient(
        f"{scheme}://127.0.0.1:9/devstoreaccount1",
        credential=AzureNamedKeyCredential("devstoreaccount1", "a2V5"),
        retry_total=0,
        raw_request_hook=lambda request: seen.append(dict(request.http_request.headers)),
    )
    store = BlobArchive(service, "c")
    assert store.block_md5 is sent
    with pytest.raises(StorageError):
        await store.stage_block("m.mp4", "blk-0000", b"a block")
    await store.close()
    assert seen and ("Content-MD5" in seen[0]) is sent
    if sent:
        assert base64.b64decode(seen[0]["Content-MD5"]) == _md5(b"a block")


async def test_over_plain_http_only_a_block_md5_catches_a_changed_byte(blob_archive: BlobArchive) -> None:
    """Why plain http keeps the per-block MD5: without TLS nothing else notices a byte changed on the way."""
    sent, arrived = b"the block as sent", b"the block as sent"[:-1] + b"!"
    with pytest.raises(StorageError, match="MD5_MISMATCH"):
        await blob_archive.stage_block("m.mp4", "blk-0000", arrived, _md5(sent))
    blob_archive.block_md5 = False  # as over https
    await blob_archive.stage_block("m.mp4", "blk-0000", arrived)  # accepted as it came
    assert await blob_archive.uncommitted_blocks("m.mp4") == [StagedBlock("blk-0000", len(arrived))]


async def test_committed_media_carries_the_md5_of_the_whole_file(archive: ContainerStore) -> None:
    """So azcopy --check-md5, Storage Explorer and the SDKs can check any download with standard tools."""
    parts = (b"a" * 1000, b"b" * 17)
    for index, data in enumerate(parts):
        await archive.stage_block("m.mp4", f"blk-{index:04d}", data)
    whole = b"".join(parts)
    assert await archive.commit_new("m.mp4", ["blk-0000", "blk-0001"], "video/mp4", {}, TAGS, _md5(whole))
    info = await archive.info("m.mp4")
    assert info is not None and info.content_md5 == _md5(whole)
    one = b"one block"
    assert await archive.create_media("one.mp4", one, _md5(one), "video/mp4", {}, TAGS)
    info = await archive.info("one.mp4")
    assert info is not None and info.content_md5 == _md5(one)
    await archive.stage_block("resumed.mp4", "blk-0000", b"c" * 10)
    assert await archive.commit_new("resumed.mp4", ["blk-0000"], "video/mp4", {}, TAGS)  # a resumed copy: none
    info = await archive.info("resumed.mp4")
    assert info is not None and info.content_md5 is None


async def test_the_content_md5_is_what_a_download_is_checked_against(blob_archive: BlobArchive) -> None:
    """As the SDK itself reads it: the property a download carries is the MD5 of the bytes it returns."""
    data = b"x" * 1017
    await blob_archive.stage_block("m.mp4", "blk-0000", data)
    assert await blob_archive.commit_new("m.mp4", ["blk-0000"], "video/mp4", {}, TAGS, _md5(data))
    downloaded = await blob_archive._container.get_blob_client("m.mp4").download_blob()
    assert _md5(await downloaded.readall()) == bytes(downloaded.properties.content_settings.content_md5 or b"")
    assert downloaded.properties.content_settings.content_type == "video/mp4"


async def _pieces(data: bytes, size: int, fail_at: int | None = None) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        if fail_at is not None and at >= fail_at:
            raise OSError("the download broke off")
        await asyncio.sleep(0)
        yield data[at : at + size]


async def test_a_streamed_put_blob_is_created_once_and_keeps_the_md5_the_service_computed(
    archive: ContainerStore,
) -> None:
    data = bytes(range(256)) * 4099
    md5 = await archive.put_media_stream(
        "m.mp4", _pieces(data, 65536), len(data), "video/mp4", {"single_put": "true"}, TAGS
    )
    assert md5 == _md5(data)
    info = await archive.info("m.mp4")
    assert info is not None and (info.size, info.metadata, info.content_md5) == (
        len(data),
        {"single_put": "true"},
        _md5(data),
    )
    assert await archive.committed_blocks("m.mp4") == []  # one Put Blob leaves no block list
    assert await archive.sha256("m.mp4") == (hashlib.sha256(data).hexdigest(), len(data))
    # create-only: a second Put Blob leaves the first untouched
    assert await archive.put_media_stream("m.mp4", _pieces(b"x" * 10, 5), 10, "video/mp4", {}, {}) is None
    assert await archive.sha256("m.mp4") == (hashlib.sha256(data).hexdigest(), len(data))


async def test_a_streamed_put_blob_keeps_its_type_and_tags(blob_archive: BlobArchive) -> None:
    data = b"y" * 70_000
    assert await blob_archive.put_media_stream("m.mp4", _pieces(data, 65536), len(data), "video/mp4", {}, TAGS)
    props = await blob_archive._container.get_blob_client("m.mp4").get_blob_properties()
    assert props.content_settings.content_type == "video/mp4" and props.tag_count == 1


async def test_a_streamed_put_blob_whose_body_breaks_off_creates_nothing(archive: ContainerStore) -> None:
    data = b"z" * 300_000
    with pytest.raises((OSError, StorageError)):
        await archive.put_media_stream("m.mp4", _pieces(data, 65536, fail_at=131072), len(data), "video/mp4", {}, {})
    assert await archive.info("m.mp4") is None
