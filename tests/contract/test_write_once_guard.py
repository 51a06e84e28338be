"""The write-once guard reads Azurite's real access log: every way the SDK changes a blob shows up as a violation.

The unit tests give the guard hand-written log lines; this one makes Azurite
write them, so a change in Azurite's log format cannot blind the guard.
"""

from __future__ import annotations

import asyncio
import uuid

from azure.storage.blob import BlobBlock, StandardBlobTier
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import Azurite
from devtools.write_once import Guard, check_log


async def _guarded(azurite: Azurite, container: str, expected: int) -> Guard:
    """The guard over the session's log, for this container alone, once Azurite has logged ``expected`` requests."""
    assert azurite.log_path is not None
    for _ in range(100):
        guard = check_log(azurite.log_path, Guard(is_archive=lambda c: c == container))
        if guard.checked >= expected:
            return guard
        await asyncio.sleep(0.05)
    raise AssertionError(f"Azurite logged {guard.checked} of {expected} requests to {container}")


async def test_the_guard_sees_every_change_azurite_answers(azurite: Azurite) -> None:
    name = f"wog-{uuid.uuid4().hex}"
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(name)
        await container.create_container()
        blob = container.get_blob_client("a/b.json")
        await blob.upload_blob(b"{}", overwrite=False)  # a create: allowed
        await blob.download_blob()  # a read: allowed
        await blob.upload_blob(b"[]", overwrite=True)
        await blob.set_blob_metadata({"k": "v"})
        await blob.set_http_headers()
        await blob.set_blob_tags({"kind": "media"})
        await blob.set_standard_blob_tier(StandardBlobTier.COOL)
        staged = container.get_blob_client("a/m.mp4")
        await staged.stage_block("YmxrMA==", b"x")  # an uncommitted block: allowed
        await staged.commit_block_list([BlobBlock("YmxrMA==")])  # a create: allowed
        await staged.commit_block_list([BlobBlock("YmxrMA==")])  # committed again over itself
        await blob.delete_blob()
    guard = await _guarded(azurite, name, expected=11)
    reasons = [v.split(": ", 1)[1] for v in guard.violations]
    assert reasons == [
        "overwrote a blob",
        "changed a blob (metadata)",
        "changed a blob (properties)",
        "changed a blob (tags)",
        "changed a blob (tier)",
        "overwrote a blob",
        "deleted a blob",
    ]
