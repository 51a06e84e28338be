"""A bag in another blob container, its payload copied by the storage service (core.ports.CopyTarget).

Each payload file is copied from the archive by Copy Blob (``start_copy_from_url``, with a read-only SAS on the
source: edges.archive.read_url) straight to ``{prefix}/data/…``: the bytes stay inside the storage service. The
export then reads the copy back and hashes it against the chain-of-custody record (nothing else could prove
what was copied: the records hold sha256s, and the service computes none), and, once it matches, marks the copy
with the metadata ``bagsha256``. The journal is ``{prefix}/.export-journal.json`` (the export's header); an
export run again with the same query keeps every copy so marked that has the size it had, and copies the rest
again. ``bagit.txt`` comes last and the journal goes: a prefix with ``bagit.txt`` is a finished bag.

This container is not the archive: it is written over and its blobs are given metadata. Hand it to whoever
receives the bag (a SAS, or ``azcopy copy`` of the prefix), and delete it when they have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from recording_pipeline.core.bag import BAGIT, PAYLOAD
from recording_pipeline.core.errors import ExportTargetError, StorageError
from recording_pipeline.edges.storage_errors import create_if_missing, storage_errors

JOURNAL = ".export-journal.json"
DIGEST = "bagsha256"
COPY_POLL_SECONDS = 1.0


class ContainerBag:
    def __init__(self, container: ContainerClient, prefix: str, poll: float = COPY_POLL_SECONDS) -> None:
        prefix = prefix.strip("/")
        if not prefix or ".." in prefix.split("/"):
            raise ExportTargetError("name the bag's folder in the container: CONTAINER/FOLDER")
        self._container = container
        self.prefix = prefix
        self.description = f"container {container.url}/{prefix}"
        self._poll = poll

    def _name(self, path: str) -> str:
        return f"{self.prefix}/{path}"

    async def open(self, header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
        await create_if_missing(self._container.create_container(), f"container {self._container.container_name}")
        if await self._exists(BAGIT):
            raise ExportTargetError(f"{self.description} is a finished bag: export to another folder")
        earlier = await self._read_journal()
        if earlier is None:
            async for _name in self._container.list_blob_names(name_starts_with=self.prefix + "/"):
                raise ExportTargetError(f"{self.description} holds other blobs: choose a new folder")
            await self._put(JOURNAL, json.dumps(header).encode(), "application/json")
            return header, {}
        if earlier.get("query") != header["query"]:
            raise ExportTargetError(
                f"{self.description} holds an unfinished export of another query "
                f"({json.dumps(earlier.get('query'))}): run that export again to finish it, or choose another folder"
            )
        kept: dict[str, tuple[str, int]] = {}
        with storage_errors(f"list {self.prefix}/{PAYLOAD}"):
            listing = self._container.list_blobs(name_starts_with=self._name(PAYLOAD), include=["metadata"])
            async for blob in listing:
                digest = (blob.metadata or {}).get(DIGEST)
                if digest:
                    kept[str(blob.name)[len(self.prefix) + 1 :]] = (digest, int(blob.size))
        return earlier, kept

    async def copy(self, path: str, source_url: str) -> None:
        """Copy Blob, then wait while the service reports it pending (Azurite copies at once: its
        ``startCopyFromURL`` answers success)."""
        blob = self._container.get_blob_client(self._name(path))
        with storage_errors(f"copy to {self._name(path)}"):
            answer = await blob.start_copy_from_url(source_url)
            status = str(answer.get("copy_status"))
            while status == "pending":
                await asyncio.sleep(self._poll)
                status = str((await blob.get_blob_properties()).copy.status)
        if status != "success":
            raise StorageError(f"copy to {self._name(path)}: the service ended it {status}", code=status)

    async def read_back(self, path: str) -> AsyncIterator[bytes]:
        with storage_errors(f"read {self._name(path)}"):
            downloader = await self._container.get_blob_client(self._name(path)).download_blob()
            async for piece in downloader.chunks():
                yield piece

    async def write(self, path: str, pieces: AsyncIterable[bytes]) -> None:
        """A payload file uploaded through this process (the export copies instead; kept for the Protocol)."""
        await self._put(path, pieces, "application/octet-stream")

    async def keep(self, path: str, sha256: str, size: int) -> None:
        with storage_errors(f"metadata of {self._name(path)}"):
            await self._container.get_blob_client(self._name(path)).set_blob_metadata({DIGEST: sha256})

    async def discard(self, path: str) -> None:
        with storage_errors(f"delete {self._name(path)}"), contextlib.suppress(ResourceNotFoundError):
            await self._container.get_blob_client(self._name(path)).delete_blob()

    async def write_tag(self, name: str, data: bytes) -> None:
        await self._put(name, data, "text/plain; charset=utf-8")

    async def finish(self, bagit: bytes) -> None:
        await self.write_tag(BAGIT, bagit)
        await self.discard(JOURNAL)

    async def _put(self, path: str, data: bytes | AsyncIterable[bytes], content_type: str) -> None:
        with storage_errors(f"write {self._name(path)}"):
            await self._container.get_blob_client(self._name(path)).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
            )

    async def _exists(self, path: str) -> bool:
        with storage_errors(f"properties of {self._name(path)}"):
            return bool(await self._container.get_blob_client(self._name(path)).exists())

    async def _read_journal(self) -> dict[str, Any] | None:
        with storage_errors(f"read {self._name(JOURNAL)}"):
            try:
                downloader = await self._container.get_blob_client(self._name(JOURNAL)).download_blob()
            except ResourceNotFoundError:
                return None
            doc: dict[str, Any] = json.loads(await downloader.readall())
            return doc
