"""ArchiveStore: the customer's archive container, through azure-storage-blob (async).

Nothing here overwrites an archived recording: media and metadata are created
with If-None-Match: *, JSON documents that change (manifests) are replaced only
with If-Match on the ETag that was read, and blocks are staged under
deterministic ids so a later attempt can see what an earlier one left.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient, ContainerClient

log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    etag: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class StagedBlock:
    block_id: str
    size: int


class ArchiveStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._service = service
        self.container_name = container
        self._container: ContainerClient = service.get_container_client(container)

    @property
    def url(self) -> str:
        return str(self._container.url)

    async def ensure_container(self) -> None:
        await create_if_missing(self._container.create_container(), f"container {self.container_name}")

    async def close(self) -> None:
        await self._service.close()

    # --- reading ---------------------------------------------------------

    async def info(self, name: str) -> BlobInfo | None:
        try:
            props = await self._container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return BlobInfo(name, int(props.size), str(props.etag), dict(props.metadata or {}))

    async def read_bytes(self, name: str, limit: int = 4 * 1024 * 1024) -> tuple[bytes, str] | None:
        """A small blob's content and ETag (manifests, metadata JSON). None if absent."""
        try:
            downloader = await self._container.get_blob_client(name).download_blob()
        except ResourceNotFoundError:
            return None
        if downloader.size > limit:
            raise ValueError(f"{name} is {downloader.size} bytes, more than the {limit} expected")
        body = await downloader.readall()
        return bytes(body), str(downloader.properties.etag)

    async def read_json(self, name: str) -> tuple[dict[str, Any], str] | None:
        found = await self.read_bytes(name)
        if found is None:
            return None
        return json.loads(found[0]), found[1]

    async def stream(self, name: str) -> AsyncIterator[bytes]:
        """The whole blob, piece by piece (re-hashing multi-GB media without holding it)."""
        downloader = await self._container.get_blob_client(name).download_blob()
        async for piece in downloader.chunks():
            yield piece

    async def list_names(self, prefix: str) -> AsyncIterator[str]:
        async for item in self._container.list_blob_names(name_starts_with=prefix):
            yield item

    # --- writing ---------------------------------------------------------

    async def create(self, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        """Write a new blob. False if it already existed (left untouched)."""
        try:
            await self._container.get_blob_client(name).upload_blob(
                data,
                overwrite=False,
                content_settings=ContentSettings(content_type=content_type),
                metadata=metadata,
            )
        except ResourceExistsError:
            return False
        return True

    async def replace_json(self, name: str, doc: dict[str, Any], etag: str | None) -> str:
        """Write a JSON document only if it is still at ``etag`` (None: only if absent).

        Raises ResourceModifiedError / ResourceExistsError when someone else wrote first.
        """
        conditions: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            if etag
            else {"match_condition": MatchConditions.IfMissing}
        )
        result = await self._container.get_blob_client(name).upload_blob(
            json.dumps(doc, indent=1, sort_keys=True).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type=JSON),
            **conditions,
        )
        return str(result["etag"])

    async def update_json(
        self, name: str, mutate: Callable[[dict[str, Any] | None], dict[str, Any] | None], attempts: int = 20
    ) -> dict[str, Any] | None:
        """Read-modify-write under ETag conditions; ``mutate`` may run several times. None: no change."""
        for _ in range(attempts):
            found = await self.read_json(name)
            current, etag = found if found else (None, None)
            updated = mutate(json.loads(json.dumps(current)) if current is not None else None)
            if updated is None:
                return current
            try:
                await self.replace_json(name, updated, etag)
                return updated
            except (ResourceModifiedError, ResourceExistsError):
                continue
            except HttpResponseError as exc:
                if exc.status_code in (409, 412):
                    continue
                raise
        raise RuntimeError(f"{name}: gave up after {attempts} concurrent updates")

    async def delete(self, name: str) -> None:
        """Remove an operational record (a quarantined job once it is re-driven). Absent counts as removed."""
        with contextlib.suppress(ResourceNotFoundError):
            await self._container.get_blob_client(name).delete_blob()

    async def set_metadata(self, name: str, metadata: dict[str, str]) -> None:
        await self._container.get_blob_client(name).set_blob_metadata(metadata)

    # --- staged block uploads -------------------------------------------

    async def uncommitted_blocks(self, name: str) -> list[StagedBlock]:
        try:
            _committed, uncommitted = await self._container.get_blob_client(name).get_block_list("uncommitted")
        except ResourceNotFoundError:
            return []
        return [StagedBlock(str(b.id), int(b.size)) for b in uncommitted]

    async def committed_blocks(self, name: str) -> list[StagedBlock]:
        committed, _ = await self._container.get_blob_client(name).get_block_list("committed")
        return [StagedBlock(str(b.id), int(b.size)) for b in committed]

    async def stage_block(self, name: str, block_id: str, data: bytes | memoryview) -> None:
        await self._container.get_blob_client(name).stage_block(
            block_id, bytes(data) if isinstance(data, memoryview) else data, length=len(data), validate_content="md5"
        )

    async def commit_new(self, name: str, block_ids: list[str], content_type: str, metadata: dict[str, str]) -> bool:
        """Commit the staged blocks as a new blob. False if the blob already existed."""
        try:
            await self._container.get_blob_client(name).commit_block_list(
                [BlobBlock(block_id=b) for b in block_ids],
                content_settings=ContentSettings(content_type=content_type),
                metadata=metadata,
                match_condition=MatchConditions.IfMissing,
            )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return False
            raise
        return True

    # --- leases ---------------------------------------------------------

    async def try_lease(self, name: str, seconds: int = 60) -> BlobLeaseClient | None:
        """A lease on ``name``, or None if someone else holds one."""
        lease = BlobLeaseClient(self._container.get_blob_client(name))
        try:
            await lease.acquire(lease_duration=seconds)
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return None
            raise
        return lease


async def create_if_missing(create: Awaitable[Any], what: str) -> None:
    """Create a container or queue unless it exists. 403 means least-privilege roles: the infra made it."""
    try:
        await create
    except ResourceExistsError:
        pass
    except HttpResponseError as exc:
        if exc.status_code != 403:
            raise
        log.info("no right to create %s; expecting the deployment to have created it", what)
