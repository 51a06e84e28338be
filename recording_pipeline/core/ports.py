"""What the app needs from the world, as Protocols: the archive, the chunk queue, ACS.

The handlers depend on these, never on a client library. The edges implement
them over azure-storage-blob, azure-storage-queue and aiohttp; the tests' in-
memory fakes implement them too, and one contract test per edge runs the same
assertions against both, so the fakes cannot drift from the real thing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from recording_pipeline.core.errors import ConcurrentUpdateError
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.outbound import OutboundEvent
from recording_pipeline.core.quarantine import QuarantineRecord

T = TypeVar("T")


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    etag: str
    metadata: dict[str, str]
    created: datetime | None = None  # by the service's clock
    content_md5: bytes | None = None  # the blob's stored Content-MD5: the whole file's, for media


@dataclass(frozen=True)
class Versioned:
    """A JSON document as its writer last knew it: ``doc`` None means absent, ``etag`` None likewise."""

    doc: Any | None
    etag: str | None


async def read_modify_write(
    read: Callable[[], Awaitable[tuple[Any, str] | None]],
    replace: Callable[[Any, str | None], Awaitable[str | None]],
    mutate: Callable[[Any | None], Any | None],
    attempts: int,
    known: Versioned | None,
    name: str,
) -> Versioned:
    """The optimistic update every StateStore makes, over its own ``read`` (document and ETag, or None) and
    ``replace`` (write only if still at that ETag, None: only if absent; the new ETag, or None if another writer
    came first). ``known`` is tried first, without a read."""
    for _ in range(attempts):
        if known is not None:
            current, etag, known = known.doc, known.etag, None
        else:
            found = await read()
            current, etag = found if found else (None, None)
        updated = mutate(json.loads(json.dumps(current)) if current is not None else None)
        if updated is None:
            return Versioned(current, etag)
        written = await replace(updated, etag)
        if written is not None:
            return Versioned(updated, written)
    raise ConcurrentUpdateError(f"{name}: gave up after {attempts} concurrent updates")


@dataclass(frozen=True)
class StagedBlock:
    block_id: str
    size: int


class _Readable(Protocol):
    container_name: str

    async def ensure(self) -> None:
        """Create the container if it is missing (a 403 means the deployment made it)."""

    async def info(self, name: str) -> BlobInfo | None: ...

    async def read_bytes(self, name: str, limit: int = ...) -> tuple[bytes, str] | None:
        """A small blob whole, with its ETag; BlobTooLargeError past ``limit``."""

    async def read_blob(self, name: str, limit: int = ...) -> tuple[bytes, BlobInfo] | None:
        """A small blob whole, with its properties, in one request."""

    async def read_json(self, name: str) -> tuple[Any, str] | None: ...

    def list_names(self, prefix: str) -> AsyncIterator[str]: ...

    async def create(self, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        """A new blob; False (and nothing written) if it already exists."""

    async def close(self) -> None: ...


class ArchiveStore(_Readable, Protocol):
    """The archive container: write-once. Every blob is created once and never modified or deleted, so the
    container can be under a WORM policy; nothing here offers to change a blob. Every failure is a StorageError.

    ``block_md5``: whether staged blocks must carry a Content-MD5 (only where the account is reached over plain
    http: edges/archive.block_md5_wanted)."""

    block_md5: bool

    def stream(self, name: str) -> AsyncIterator[bytes]:
        """The blob piece by piece, for media of any size."""

    async def list_page(self, prefix: str, marker: str | None, size: int) -> tuple[list[str], str | None]:
        """One page of at most ``size`` names under ``prefix`` in name order, from ``marker`` (None: the first
        page), and the marker of the next page (None: this was the last). A marker can be kept and used again
        later: a walk of the whole archive resumes from it instead of listing everything before it again. A
        marker the service no longer takes is a StorageError with status 400."""

    async def sha256(self, name: str, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        """(hex sha256, bytes read), streamed; ``progress`` is told each piece's size."""

    async def uncommitted_blocks(self, name: str) -> list[StagedBlock]: ...

    async def committed_blocks(self, name: str) -> list[StagedBlock]: ...

    async def stage_block(self, name: str, block_id: str, data: bytes, md5: bytes | None = None) -> None:
        """Upload one block (an uncommitted block changes no blob). ``md5``: the block's digest, computed by the
        caller off the event loop, for the service to check; where the account is reached over plain http it is
        computed here when not given, over https none is sent (TLS guards the bytes: edges/archive.block_md5_wanted)."""

    async def create_media(
        self, name: str, data: bytes, md5: bytes, content_type: str, metadata: dict[str, str], tags: dict[str, str]
    ) -> bool:
        """A file of one block, created whole by one Put Blob (its Content-MD5 checked by the service), with its
        metadata and index tags; False if the blob already exists. It has no committed block list."""

    async def put_media_stream(
        self,
        name: str,
        body: AsyncIterable[bytes],
        size: int,
        content_type: str,
        metadata: dict[str, str],
        tags: dict[str, str],
    ) -> bytes | None:
        """One Put Blob of ``size`` bytes streamed from ``body``, create-only: the MD5 the service computed of what
        it stored (also the blob's Content-MD5), or None if the blob already existed. A body that fails or ends
        short creates nothing. Nothing can replay the body: a failure is the caller's to retry."""

    async def commit_new(
        self,
        name: str,
        block_ids: list[str],
        content_type: str,
        metadata: dict[str, str],
        tags: dict[str, str],
        content_md5: bytes | None = None,
    ) -> bool:
        """Commit the staged blocks as a new blob, metadata, index tags and (``content_md5``: the whole file's MD5)
        Content-MD5 set in the same request; False if the blob already exists."""


class StateStore(_Readable, Protocol):
    """The state container: what changes (manifests, quarantine records, locks, the legal-hold registry)."""

    async def update_json(
        self,
        name: str,
        mutate: Callable[[Any | None], Any | None],
        attempts: int = 20,
        known: Versioned | None = None,
    ) -> Versioned:
        """Read-modify-write under ETag conditions; ``mutate`` may run several times; None from it: no change.
        ``known``: the version the caller believes current; the first write is conditional on it, without a read
        (a wrong guess costs the read it saved). Returns what the blob now holds."""

    async def delete(self, name: str) -> None:
        """Remove a blob; absent counts as removed."""

    def lease(self, name: str, seconds: int, wait: float) -> AbstractAsyncContextManager[bool]:
        """Hold a lease on the lock ``name`` (created if missing, renewed) while inside; True if held, False if
        another holder kept it throughout ``wait`` seconds."""


class DeadLetterStore(_Readable, Protocol):
    """Event Grid's dead-letter container: its blobs listed and read, records created beside them; nothing Event Grid
    wrote is changed or deleted."""


class HoldableArchive(ArchiveStore, Protocol):
    """What the legal-hold command needs besides reading: a hold on one blob, placed or cleared."""

    async def set_legal_hold(self, name: str, hold: bool) -> None: ...


@runtime_checkable
class ShareableArchive(ArchiveStore, Protocol):
    """The archive, for an export that copies server-side: a URL another container of the service may read one
    blob at, for a while (a read-only SAS), so the bytes go from blob to blob inside the storage service."""

    async def read_url(self, name: str, seconds: int) -> str: ...


class BagTarget(Protocol):
    """Where an export writes its bag (core.bag): a folder, or a folder zipped at the end. Payload files are
    written to a partial place and become part of the bag only when kept (after their digest was checked); a
    journal of what was kept lets an interrupted export resume; ``bagit.txt`` comes last, so a bag that has it is
    finished. Every failure is an ExportTargetError (what the target holds) or a StorageError/OSError (I/O)."""

    description: str  # what the bag's bag-info.txt and the access record name as its destination

    async def open(self, header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
        """Begin, or resume the unfinished export whose header has the same ``query``: the header in force (a
        resumed export keeps its own id and start) and the payload files already kept (path → (sha256, size)).
        ExportTargetError if the target holds a finished bag, another export, or anything else."""

    async def write(self, path: str, pieces: AsyncIterable[bytes]) -> None:
        """One payload file, streamed to its partial place (not part of the bag until ``keep``)."""

    async def keep(self, path: str, sha256: str, size: int) -> None:
        """The checked file takes its place in the bag, and the journal says so."""

    async def discard(self, path: str) -> None:
        """A file that failed its check is removed; the bag cannot be finished without it."""

    async def write_tag(self, name: str, data: bytes) -> None:
        """A tag file at the bag's root (bag-info.txt, the manifests, the index)."""

    async def finish(self, bagit: bytes) -> None:
        """``bagit.txt``, last: the bag is finished; the journal goes."""


@runtime_checkable
class CopyTarget(BagTarget, Protocol):
    """A bag in another blob container: payload files are copied by the storage service from the archive (Copy
    Blob), never through this process; each copy is then read back and hashed to be checked."""

    async def copy(self, path: str, source_url: str) -> None:
        """A server-side copy of ``source_url`` to the payload file's partial place; returns when it is done."""

    def read_back(self, path: str) -> AsyncIterator[bytes]:
        """The copy just made, streamed."""


class MediaStream(Protocol):
    """An open download: ``start`` is where the body begins, ``total`` the whole file's size if known, ``headers``
    what ACS declared about the file (Content-Type, ETag, Last-Modified), for the chain of custody."""

    @property
    def start(self) -> int: ...

    @property
    def total(self) -> int | None: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def pieces(self) -> AsyncIterator[bytes]: ...


class Retrier(Protocol):
    async def call(
        self,
        what: str,
        operation: Callable[[], Awaitable[T]],
        progress: Callable[[], int] | None = None,
        received: Callable[[], int] | None = None,
    ) -> T: ...


class RecordingSource(Protocol):
    """ACS recording storage: every failure is an AcsError."""

    @property
    def retry(self) -> Retrier: ...

    async def fetch_metadata(self, url: str) -> bytes: ...

    def open_media(self, url: str, offset: int = 0) -> AbstractAsyncContextManager[MediaStream]:
        """One try at the media from ``offset``; the caller resumes and retries."""

    async def delete(self, url: str) -> bool:
        """True if deleted now, False if it was already gone."""


class PoisonMessage(Protocol):
    content: str

    async def remove(self) -> None: ...


class ChunkQueue(Protocol):
    """The Storage queue of chunk jobs and its poison queue. Every failure is a StorageError."""

    name: str
    poison_name: str

    async def ensure(self) -> None: ...

    async def enqueue(self, jobs: Sequence[RecordingChunk]) -> int:
        """All of them, or raise."""

    async def enqueue_later(self, job: RecordingChunk, delay_seconds: int) -> None: ...

    async def send_poison(self, record: QuarantineRecord) -> None:
        """A quarantine record that never expires."""

    def poison_messages(self, limit: int) -> AsyncIterator[PoisonMessage]:
        """What waits in the poison queue, each hidden from others until removed or a while has passed."""

    async def poison_count(self) -> int: ...

    async def close(self) -> None: ...


class EventPublisher(Protocol):
    """The Event Grid topic downstream systems subscribe to. Every failure is a PublishError."""

    async def publish(self, events: Sequence[OutboundEvent]) -> None:
        """All of them, as one batch, or raise (after the client's own retries)."""

    async def close(self) -> None: ...


class ContainerStore(HoldableArchive, StateStore, Protocol):
    """Everything one blob container offers. An edge implements all of it; the app holds it by the narrower role
    of the container it is over (ArchiveStore, StateStore), so it cannot ask the archive to change a blob."""
