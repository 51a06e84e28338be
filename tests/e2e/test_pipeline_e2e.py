"""The whole path through a real ``serve`` process: Event Grid POST → queue →
worker → Azurite, with the simulator playing ACS."""

from __future__ import annotations

import hashlib
from typing import Any

from azure.storage.blob.aio import BlobServiceClient

from devtools.simulator import SimRecording
from recording_pipeline import __version__
from recording_pipeline.core.custody import CustodyRecord
from recording_pipeline.core.naming import recording_key
from recording_pipeline.core.state import chunk_key
from tests.support.stack import Stack, post_events, wait_until

MIB = 1024 * 1024
CALL_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
RECORDING_ID = "eyJQbGF0Zm9ybUVuZHBvaW50SWQiOiJ0ZXN0In0"


async def _sha256(service: BlobServiceClient, container: str, name: str) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    downloader = await service.get_container_client(container).get_blob_client(name).download_blob()
    async for piece in downloader.chunks():
        hasher.update(piece)
        size += len(piece)
    return hasher.hexdigest(), size


async def test_three_chunks_archived_byte_identical_and_deleted_only_after_verification(
    stack: Stack, blob_service: BlobServiceClient, serve_factory: Any
) -> None:
    sim = stack.simulator
    chunks = [
        sim.add("0-eus-d2-00000000000000000000000000000000", 100 * MIB + 4321, "mp4", chunk_index=0, call_id=CALL_ID),
        sim.add("0-eus-d2-00000000000000000000000000000001", 3 * MIB + 17, "mp4", chunk_index=1, call_id=CALL_ID),
        sim.add("0-eus-d2-00000000000000000000000000000002", 700 * 1024, "mp4", chunk_index=2, call_id=CALL_ID),
    ]
    expected = {c.document_id: c.sha256 for c in chunks}
    container = blob_service.get_container_client(stack.container)
    state_at_delete: dict[str, dict[str, object]] = {}

    async def check_archive_before_delete(recording: SimRecording) -> None:
        """Runs inside the simulator when the DELETE arrives, before it is honoured."""
        names = [n async for n in container.list_blob_names(name_starts_with=f"{CALL_ID}/")]
        media = next(n for n in names if recording.document_id in n and n.endswith(".mp4"))
        props = await container.get_blob_client(media).get_blob_properties()
        meta_blob = next(n for n in names if recording.document_id in n and n.endswith(".metadata.json"))
        meta_bytes = await (await container.get_blob_client(meta_blob).download_blob()).readall()
        proof = next((n for n in names if recording.document_id in n and n.endswith(".custody.json")), None)
        custody = (
            CustodyRecord.model_validate_json(await (await container.get_blob_client(proof).download_blob()).readall())
            if proof
            else None
        )
        state_at_delete[recording.document_id] = {
            "size": props.size,
            "custody": custody,
            "metadata_identical": meta_bytes == recording.metadata(),
        }

    sim.on_delete = check_archive_before_delete
    serve = serve_factory(stack.env)
    status, body = await post_events(serve.url, [sim.event(CALL_ID, RECORDING_ID, chunks)], stack.env["WEBHOOK_KEY"])
    assert status == 200, body
    assert body["enqueued"] == 3

    async def all_deleted() -> bool:
        return all(c.document_id in sim.deleted for c in chunks)

    await wait_until(all_deleted, timeout=180)

    # Exactly one DELETE per chunk, each one issued when the archive already held the verified copy.
    for chunk in chunks:
        assert sim.count("DELETE", "delete", chunk.document_id) == 1
        seen = state_at_delete[chunk.document_id]
        assert seen["size"] == chunk.size
        custody = seen["custody"]
        assert isinstance(custody, CustodyRecord), "DELETE came before the chain-of-custody record"
        assert (custody.sha256, custody.size) == (expected[chunk.document_id], chunk.size)
        assert custody.source.content_length == chunk.size and custody.source.content_type == "video/mp4"
        # What ACS declared, as it declared it; the URL it came from, without its query.
        assert (custody.source.etag, custody.source.last_modified) == (chunk.etag, chunk.last_modified)
        assert custody.source.url == sim.chunk_urls(chunk)["contentLocation"]
        assert custody.chunk.document_id == chunk.document_id and custody.app_version == __version__
        assert seen["metadata_identical"]

    # Byte-identical media (re-hashed from Azurite, not from our own metadata) and metadata.
    rec_key = recording_key(RECORDING_ID, None)

    async def recorded_deleted() -> dict[str, Any] | None:
        doc = await stack.manifest(CALL_ID, rec_key)
        entries = (doc or {}).get("chunks", {}).values()
        return doc if len(entries) == len(chunks) and all(c.get("sourceDeletedAt") for c in entries) else None

    manifest = await wait_until(recorded_deleted, timeout=30)
    assert manifest["state"] == "complete"
    for chunk in chunks:
        entry = manifest["chunks"][chunk_key(chunk.chunk_index)]
        digest, size = await _sha256(blob_service, stack.container, entry["mediaBlob"])
        assert (digest, size) == (expected[chunk.document_id], chunk.size)
        assert entry["mediaBlob"].endswith(f"{chunk.chunk_index:05d}-{chunk.document_id}.mp4")
        props = await container.get_blob_client(entry["mediaBlob"]).get_blob_properties()
        assert props.content_settings.content_type == "video/mp4"
        assert props.metadata["source_size"] == str(chunk.size)
        assert await container.get_blob_client(entry["mediaBlob"]).get_blob_tags() == {"kind": "media"}
        meta = await (await container.get_blob_client(entry["metadataBlob"]).download_blob()).readall()
        assert meta == chunk.metadata()
        assert entry["sourceDeletedAt"]
    # The media was downloaded once per chunk: no second pass over ACS.
    for chunk in chunks:
        assert sim.count("GET", "media", chunk.document_id) == 1
