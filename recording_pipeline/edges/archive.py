"""BlobArchive: one blob container of the customer's archive account, through azure-storage-blob (async).

One class, two roles (core.ports): over the archive container it is the
write-once ArchiveStore — blobs are created with If-None-Match: * (media by
one Put Block List that carries its metadata, index tags and whole-blob
Content-MD5, or by one Put Blob), blocks are staged under deterministic ids so
a later attempt can see what an earlier one left, and nothing is ever modified
or deleted; over the state container it is the StateStore — JSON documents
replaced only with If-Match on the ETag that was read, lock blobs leased. Every
Azure SDK error leaves as a StorageError.

Staged blocks carry a Content-MD5 only when the account is reached over plain
http (:func:`block_md5_wanted`): over https, TLS already protects every
request's bytes, which is what azure-storage-blob's ``validate_content`` docs
say the per-request hash is for, and hashing each block again costs CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobSasPermissions, ContentSettings, generate_blob_sas
from azure.storage.blob._generated.models import BlobHTTPHeaders, ModifiedAccessConditions
from azure.storage.blob._serialize import serialize_blob_tags_header
from azure.storage.blob._shared.request_handlers import add_metadata_headers
from azure.storage.blob._shared.response_handlers import return_response_headers
from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient, ContainerClient

from recording_pipeline.core.errors import BlobTooLargeError, StorageError
from recording_pipeline.core.ports import BlobInfo, StagedBlock, Versioned, read_modify_write
from recording_pipeline.edges.storage_errors import create_if_missing, storage_errors, translated_iter

log = logging.getLogger(__name__)

JSON = "application/json"
SMALL_BLOB_LIMIT = 4 * 1024 * 1024
LEASE_POLL_SECONDS = 1.0


def block_md5_wanted(account_url: str) -> bool:
    """Whether staged blocks should carry a Content-MD5: only when the account is reached over plain http.

    Over https, TLS detects any change to a request's bytes on the way, so a per-block MD5 adds only CPU (ours,
    on every instance). Over plain http (Azurite, an emulator) nothing else would notice a flipped bit
    (``tests/contract/test_archive_store.py::test_over_plain_http_only_a_block_md5_catches_a_changed_byte``), and
    Azurite, given none, computes a CRC64 of every block in JavaScript instead (docs/PERFORMANCE.md).
    """
    return urlsplit(account_url).scheme.lower() != "https"


class BlobArchive:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._service = service
        self.container_name = container
        self._container: ContainerClient = service.get_container_client(container)
        self.block_md5 = block_md5_wanted(str(service.url))
        self._delegation: tuple[Any, datetime] | None = None  # a user delegation key and its expiry, for read_url

    @property
    def url(self) -> str:
        return str(self._container.url)

    def sibling(self, container: str) -> ContainerClient:
        """Another container of the same account, with the same credential (an export's bag container); closed
        with this one."""
        return self._service.get_container_client(container)

    async def ensure(self) -> None:
        await create_if_missing(self._container.create_container(), f"container {self.container_name}")

    async def exists(self) -> bool:
        with storage_errors(f"container {self.container_name}"):
            return bool(await self._container.exists())

    async def close(self) -> None:
        await self._service.close()

    # --- reading ---------------------------------------------------------

    async def info(self, name: str) -> BlobInfo | None:
        with storage_errors(f"properties of {name}"):
            try:
                props = await self._container.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise
                return None
        return _info(name, props)

    async def read_bytes(self, name: str, limit: int = SMALL_BLOB_LIMIT) -> tuple[bytes, str] | None:
        """A small blob's content and ETag (manifests, metadata JSON). None if absent."""
        found = await self.read_blob(name, limit)
        return None if found is None else (found[0], found[1].etag)

    async def read_blob(self, name: str, limit: int = SMALL_BLOB_LIMIT) -> tuple[bytes, BlobInfo] | None:
        """A small blob's content and properties, from one GET. None if absent."""
        with storage_errors(f"read {name}"):
            try:
                downloader = await self._container.get_blob_client(name).download_blob()
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise
                return None
            if downloader.size > limit:
                raise BlobTooLargeError(f"{name} is {downloader.size} bytes, more than the {limit} expected")
            body = await downloader.readall()
        return bytes(body), _info(name, downloader.properties)

    async def read_json(self, name: str) -> tuple[Any, str] | None:
        found = await self.read_bytes(name)
        if found is None:
            return None
        return json.loads(found[0]), found[1]

    async def stream(self, name: str) -> AsyncIterator[bytes]:
        """The whole blob, piece by piece (re-hashing multi-GB media without holding it)."""
        with storage_errors(f"read {name}"):
            downloader = await self._container.get_blob_client(name).download_blob()
            async for piece in downloader.chunks():
                yield piece

    def list_names(self, prefix: str) -> AsyncIterator[str]:
        return translated_iter(f"list {prefix}*", self._container.list_blob_names(name_starts_with=prefix))

    async def list_page(self, prefix: str, marker: str | None, size: int) -> tuple[list[str], str | None]:
        """One List Blobs request: ``by_page(continuation_token=marker)`` sends the marker as it is, and the page
        iterator's ``continuation_token`` is the service's NextMarker (azure-core ``AsyncPageIterator``)."""
        pages: Any = self._container.list_blob_names(name_starts_with=prefix, results_per_page=size).by_page(marker)
        with storage_errors(f"list {prefix}* from {marker or 'the start'}"):
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return [], None
            names = [name async for name in page]
        return names, pages.continuation_token or None

    async def sha256(self, name: str, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        """Hashed on a worker thread, piece by piece, so the event loop stays free for other transfers."""
        hasher = hashlib.sha256()
        size = 0
        async for piece in self.stream(name):
            size += len(piece)
            await asyncio.to_thread(hasher.update, piece)
            if progress is not None:
                progress(len(piece))
        return hasher.hexdigest(), size

    # --- writing ---------------------------------------------------------

    async def create(self, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        """Write a new blob. False if it already existed (left untouched)."""
        with storage_errors(f"create {name}"):
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

    async def update_json(
        self,
        name: str,
        mutate: Callable[[Any | None], Any | None],
        attempts: int = 20,
        known: Versioned | None = None,
    ) -> Versioned:
        """Read-modify-write under ETag conditions; ``mutate`` may run several times. None: no change.
        ``known``: the version the caller believes current, written over without reading it first."""
        return await read_modify_write(
            lambda: self.read_json(name),
            lambda doc, etag: self._replace_json(name, doc, etag),
            mutate,
            attempts,
            known,
            name,
        )

    async def _replace_json(self, name: str, doc: Any, etag: str | None) -> str | None:
        """Write only if the blob is still at ``etag`` (None: only if absent): the new ETag, or None if someone
        wrote first."""
        conditions: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            if etag
            else {"match_condition": MatchConditions.IfMissing}
        )
        with storage_errors(f"write {name}"):
            try:
                written = await self._container.get_blob_client(name).upload_blob(
                    json.dumps(doc, indent=1, sort_keys=True).encode(),
                    overwrite=True,
                    content_settings=ContentSettings(content_type=JSON),
                    **conditions,
                )
            except (ResourceModifiedError, ResourceExistsError):
                return None
            except HttpResponseError as exc:
                if exc.status_code in (409, 412):
                    return None
                raise
        return str(written["etag"])

    async def delete(self, name: str) -> None:
        with storage_errors(f"delete {name}"), contextlib.suppress(ResourceNotFoundError):
            await self._container.get_blob_client(name).delete_blob()

    async def set_legal_hold(self, name: str, hold: bool) -> None:
        """A legal hold on the blob's current version (needs version-level immutability on the container)."""
        with storage_errors(f"legal hold on {name}"):
            await self._container.get_blob_client(name).set_legal_hold(hold)

    # --- exports -------------------------------------------------------

    async def read_url(self, name: str, seconds: int) -> str:
        """A read-only SAS URL for one blob, valid ``seconds``: signed with the account key (a connection string)
        or a user delegation key (an identity: it needs the ``generateUserDelegationKey`` action on the account;
        Azurite signs such keys only for OAuth over https, so only the account-key way is tested here)."""
        blob = self._container.get_blob_client(name)
        start = datetime.now(UTC) - timedelta(minutes=5)  # clock skew
        expiry = datetime.now(UTC) + timedelta(seconds=seconds)
        credential = self._service.credential
        account = str(self._service.account_name)
        signing: dict[str, Any]
        if getattr(credential, "account_key", None):
            signing = {"account_key": credential.account_key}
        else:
            if self._delegation is None or self._delegation[1] < expiry:
                with storage_errors("user delegation key"):
                    key = await self._service.get_user_delegation_key(start, expiry + timedelta(hours=1))
                self._delegation = (key, expiry + timedelta(hours=1))
            signing = {"user_delegation_key": self._delegation[0]}
        sas = generate_blob_sas(
            account,
            self.container_name,
            name,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
            start=start,
            **signing,
        )
        return f"{blob.url}?{sas}"

    # --- staged block uploads -------------------------------------------

    async def uncommitted_blocks(self, name: str) -> list[StagedBlock]:
        with storage_errors(f"block list of {name}"):
            try:
                _committed, uncommitted = await self._container.get_blob_client(name).get_block_list("uncommitted")
            except ResourceNotFoundError:
                return []
        return [StagedBlock(str(b.id), int(b.size)) for b in uncommitted]

    async def committed_blocks(self, name: str) -> list[StagedBlock]:
        with storage_errors(f"block list of {name}"):
            committed, _ = await self._container.get_blob_client(name).get_block_list("committed")
        return [StagedBlock(str(b.id), int(b.size)) for b in committed]

    async def stage_block(self, name: str, block_id: str, data: bytes, md5: bytes | None = None) -> None:
        """With ``md5`` the SDK sends it as Content-MD5 instead of hashing the block on the event loop
        (``_stage_block_options`` in azure-storage-blob passes ``transactional_content_md5`` through); without,
        over plain http it is computed here, over https nothing is sent (:func:`block_md5_wanted`)."""
        if md5 is None and self.block_md5:
            md5 = hashlib.md5(data, usedforsecurity=False).digest()
        checked: dict[str, Any] = {"transactional_content_md5": md5} if md5 else {}
        with storage_errors(f"stage block {block_id} of {name}"):
            await self._container.get_blob_client(name).stage_block(
                block_id,
                _BlockBody(data),  # type: ignore[arg-type]  # an async iterable: aiohttp sends it as it is
                length=len(data),
                **checked,
            )

    async def create_media(
        self, name: str, data: bytes, md5: bytes, content_type: str, metadata: dict[str, str], tags: dict[str, str]
    ) -> bool:
        """One Put Blob, only if absent (``overwrite=False`` is If-None-Match: *). ``transactional_content_md5``
        travels through ``upload_blob``'s keyword arguments to the generated ``BlockBlobOperations.upload``
        (azure-storage-blob ``aio/_upload_helpers.upload_block_blob``), so the SDK does not hash on the loop;
        the same digest is the blob's Content-MD5."""
        with storage_errors(f"create {name}"):
            try:
                await self._container.get_blob_client(name).upload_blob(
                    bytes(data),  # upload_blob takes a bytearray for an iterable of ints
                    length=len(data),
                    overwrite=False,
                    content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(md5)),
                    metadata=metadata,
                    tags=tags or None,
                    transactional_content_md5=md5,
                )
            except ResourceExistsError:
                return False
        return True

    async def put_media_stream(
        self,
        name: str,
        body: AsyncIterable[bytes],
        size: int,
        content_type: str,
        metadata: dict[str, str],
        tags: dict[str, str],
    ) -> bytes | None:
        """One Put Blob of ``size`` bytes streamed from ``body``, only if absent: the MD5 the service computed of
        what it stored (returned, and kept as the blob's Content-MD5), or None if the blob already existed.

        ``upload_blob`` reads a body of up to ``max_single_put_size`` whole into memory
        (``aio/_upload_helpers.upload_block_blob``: ``stream.read(length)``), so the generated operation is
        called directly, as ``upload_blob`` itself calls it, with the body left as an async iterable for aiohttp
        to send as it comes. The SDK cannot replay such a body, so it does not retry (``retry_total=0``): a
        failure ends the Put Blob, and the caller sends the file again. No MD5 header can precede a body whose
        MD5 is not known yet; the caller compares the one returned with its own.
        """
        blob = self._container.get_blob_client(name)
        with storage_errors(f"create {name}"):
            try:
                answer: dict[str, Any] = await blob._client.block_blob.upload(
                    content_length=size,
                    body=body,  # an async iterable: aiohttp streams it
                    headers=add_metadata_headers(metadata),
                    blob_tags_string=serialize_blob_tags_header(tags or None),
                    blob_http_headers=BlobHTTPHeaders(blob_content_type=content_type),
                    modified_access_conditions=ModifiedAccessConditions(if_none_match="*"),
                    cls=return_response_headers,
                    retry_total=0,
                )
            except (ResourceExistsError, ResourceModifiedError):
                return None
            except HttpResponseError as exc:
                if exc.status_code in (409, 412):
                    return None
                raise
        md5 = answer.get("content_md5")
        if not md5:  # Put Blob answers with the MD5 it computed; without it nothing proves what was stored
            raise StorageError(f"create {name}: the service answered without the Content-MD5 of what it stored")
        return bytes(md5)

    async def commit_new(
        self,
        name: str,
        block_ids: list[str],
        content_type: str,
        metadata: dict[str, str],
        tags: dict[str, str],
        content_md5: bytes | None = None,
    ) -> bool:
        """Commit the staged blocks as a new blob, with its metadata, index tags and (``content_md5``, the MD5 of
        the whole file, computed while it was staged) its Content-MD5, which ``azcopy --check-md5``, Storage
        Explorer and the SDKs check a download against. False if it already existed."""
        settings = ContentSettings(
            content_type=content_type, content_md5=bytearray(content_md5) if content_md5 else None
        )
        with storage_errors(f"commit {name}"):
            try:
                await self._container.get_blob_client(name).commit_block_list(
                    [BlobBlock(block_id=b) for b in block_ids],
                    content_settings=settings,
                    metadata=metadata,
                    tags=tags or None,
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

    @asynccontextmanager
    async def lease(self, name: str, seconds: int, wait: float) -> AsyncIterator[bool]:
        """A lease on the lock blob ``name`` (created empty if missing), renewed every third of ``seconds``.

        Another holder's lease is waited for up to ``wait`` seconds: one nobody renews expires within
        ``seconds``. Losing a renewal costs efficiency, never correctness, so it is only logged.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        lease = await self._try_lease(name, seconds)
        while lease is None and loop.time() < deadline:
            await asyncio.sleep(LEASE_POLL_SECONDS)
            lease = await self._try_lease(name, seconds)
        if lease is None:
            yield False
            return
        held = lease

        async def renew() -> None:
            while True:
                await asyncio.sleep(seconds / 3)
                try:
                    await held.renew()
                except Exception as exc:
                    log.warning("could not renew the lease on %s: %s", name, type(exc).__name__)

        renewer = asyncio.create_task(renew())
        try:
            yield True
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            try:
                await held.release()
            except Exception:  # an unreleased lease simply expires in ``seconds``
                log.warning("could not release the lease on %s", name)

    async def _try_lease(self, name: str, seconds: int) -> BlobLeaseClient | None:
        lease = BlobLeaseClient(self._container.get_blob_client(name))
        with storage_errors(f"lease {name}"):
            try:
                await lease.acquire(lease_duration=seconds)
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise
                await self.create(name, b"", "application/octet-stream")  # the first lock of this name
                return await self._try_lease(name, seconds)
            except HttpResponseError as exc:
                if exc.status_code == 409:
                    return None
                raise
        return lease


class _BlockBody:
    """A block as a request body aiohttp sends without copying it: a small first piece, then the rest.

    aiohttp writes the request's headers together with the first piece of its body, and on Python 3.13.0–3.13.1
    (and before 3.12.9) it does so by joining them (``http_writer._writelines``: ``b"".join``, its workaround for
    a bug in those versions' ``writelines``), a copy of the whole block while it is sent; with every block in
    flight copied, that was ~16 MiB of the worker's peak. The pieces after the first go to the transport as they
    are. Each ``__aiter__`` starts over, so the SDK can send it again when it retries."""

    HEAD = 16 * 1024

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    async def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        view = memoryview(self._data)
        yield bytes(view[: self.HEAD])
        if len(view) > self.HEAD:
            yield view[self.HEAD :]


def _info(name: str, props: Any) -> BlobInfo:
    settings = getattr(props, "content_settings", None)
    md5 = getattr(settings, "content_md5", None)
    return BlobInfo(
        name,
        int(props.size),
        str(props.etag),
        dict(props.metadata or {}),
        getattr(props, "creation_time", None),
        bytes(md5) if md5 else None,
    )
