"""In-memory edges: the archive, the chunk queue and ACS, as the core.ports Protocols describe them.

They let the lifecycle, the worker and the webhook be tested in milliseconds.
tests/contract runs the same assertions against each fake and the real edge
(Azurite, the simulator), so a fake that drifts fails there. Each fake keeps a
census of the requests it served, by kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from recording_pipeline.core.errors import (
    AcsTransientError,
    BlobTooLargeError,
    PublishError,
    RecordingGoneError,
    StorageError,
)
from recording_pipeline.core.jobs import RecordingChunk, encode_job
from recording_pipeline.core.outbound import OutboundEvent
from recording_pipeline.core.ports import BlobInfo, StagedBlock, Versioned, read_modify_write
from recording_pipeline.core.quarantine import QuarantineRecord
from recording_pipeline.edges.retry import RetryPolicy

PIECE = 256 * 1024
FAKE_MARKER = "fake!"
JSON_TYPE = "application/json"
_etags = itertools.count(1)


@dataclass
class _Blob:
    data: bytes
    content_type: str
    metadata: dict[str, str]
    etag: str = field(default_factory=lambda: f"0x{next(_etags):X}")
    blocks: list[StagedBlock] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    legal_hold: bool = False
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    content_md5: bytes | None = None

    def info(self, name: str) -> BlobInfo:
        return BlobInfo(name, len(self.data), self.etag, dict(self.metadata), self.created, self.content_md5)


class FakeArchive:
    def __init__(
        self,
        container: str = "recordings",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        block_md5: bool = True,
    ) -> None:
        self.container_name = container
        self.block_md5 = block_md5  # as over plain http: every staged block's MD5 is checked
        self.clock = clock  # the service's clock: blobs' creation times
        self.blobs: dict[str, _Blob] = {}
        self.staged: dict[str, dict[str, bytes]] = {}
        self.leased: dict[str, asyncio.Event] = {}  # held leases, each set when it is released
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []  # (request kind, blob name), in order
        self.changed: list[str] = []  # blobs modified or deleted after they were created: must stay empty in an archive

    def _seen(self, kind: str, name: str = "") -> None:
        self.requests[kind] += 1
        self.log.append((kind, name))

    async def ensure(self) -> None:
        self._seen("create-container")

    async def info(self, name: str) -> BlobInfo | None:
        self._seen("properties", name)
        blob = self.blobs.get(name)
        return None if blob is None else blob.info(name)

    async def read_bytes(self, name: str, limit: int = 4 * 1024 * 1024) -> tuple[bytes, str] | None:
        found = await self.read_blob(name, limit)
        return None if found is None else (found[0], found[1].etag)

    async def read_blob(self, name: str, limit: int = 4 * 1024 * 1024) -> tuple[bytes, BlobInfo] | None:
        self._seen("get", name)
        blob = self.blobs.get(name)
        if blob is None:
            return None
        if len(blob.data) > limit:
            raise BlobTooLargeError(f"{name} is {len(blob.data)} bytes, more than the {limit} expected")
        return blob.data, blob.info(name)

    async def read_json(self, name: str) -> tuple[Any, str] | None:
        found = await self.read_bytes(name)
        return None if found is None else (json.loads(found[0]), found[1])

    async def stream(self, name: str) -> AsyncIterator[bytes]:
        self._seen("get", name)
        blob = self.blobs.get(name)
        if blob is None:
            raise StorageError(f"read {name}: 404 BlobNotFound", 404, "BlobNotFound")
        for start in range(0, len(blob.data), PIECE):
            await asyncio.sleep(0)
            yield blob.data[start : start + PIECE]

    async def list_names(self, prefix: str) -> AsyncIterator[str]:
        self._seen("list", prefix)
        for name in sorted(n for n in self.blobs if n.startswith(prefix)):
            yield name

    async def list_page(self, prefix: str, marker: str | None, size: int) -> tuple[list[str], str | None]:
        """The fake's marker is the last name of the page before, in a form of its own (as the service's is)."""
        self._seen("list", prefix)
        if marker is not None and not marker.startswith(FAKE_MARKER):
            raise StorageError(f"list {prefix}*: 400 OutOfRangeInput", 400, "OutOfRangeInput")
        after = marker.removeprefix(FAKE_MARKER) if marker else None
        names = sorted(n for n in self.blobs if n.startswith(prefix) and (after is None or n > after))
        page = names[:size]
        return page, f"{FAKE_MARKER}{page[-1]}" if len(names) > size else None

    async def sha256(self, name: str, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        hasher, size = hashlib.sha256(), 0
        async for piece in self.stream(name):
            hasher.update(piece)
            size += len(piece)
            if progress is not None:
                progress(len(piece))
        return hasher.hexdigest(), size

    async def create(self, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        self._seen("put", name)
        if name in self.blobs:
            return False
        self.blobs[name] = _Blob(bytes(data), content_type, dict(metadata or {}), created=self.clock())
        return True

    async def update_json(
        self,
        name: str,
        mutate: Callable[[Any | None], Any | None],
        attempts: int = 20,
        known: Versioned | None = None,
    ) -> Versioned:
        async def replace(doc: Any, etag: str | None) -> str | None:
            await asyncio.sleep(0)  # another writer may come in between, as with the real store
            self._seen("put", name)
            now = self.blobs.get(name)
            if (now.etag if now else None) != etag:
                return None
            if now is not None:
                self.changed.append(name)
            blob = self.blobs[name] = _Blob(json.dumps(doc, indent=1, sort_keys=True).encode(), JSON_TYPE, {})
            return blob.etag

        return await read_modify_write(lambda: self.read_json(name), replace, mutate, attempts, known, name)

    async def delete(self, name: str) -> None:
        self._seen("delete", name)
        if self.blobs.pop(name, None) is not None:
            self.changed.append(name)

    async def set_legal_hold(self, name: str, hold: bool) -> None:
        self._seen("legal-hold", name)
        blob = self.blobs.get(name)
        if blob is None:
            raise StorageError(f"legal hold on {name}: 404 BlobNotFound", 404, "BlobNotFound")
        blob.legal_hold = hold

    async def uncommitted_blocks(self, name: str) -> list[StagedBlock]:
        self._seen("block-list", name)
        return [StagedBlock(b, len(d)) for b, d in self.staged.get(name, {}).items()]

    async def committed_blocks(self, name: str) -> list[StagedBlock]:
        self._seen("block-list", name)
        blob = self.blobs.get(name)
        if blob is None:
            raise StorageError(f"block list of {name}: 404 BlobNotFound", 404, "BlobNotFound")
        return list(blob.blocks)

    async def stage_block(self, name: str, block_id: str, data: bytes, md5: bytes | None = None) -> None:
        self._seen("put-block", name)
        await asyncio.sleep(0)
        if md5 is not None and md5 != hashlib.md5(data, usedforsecurity=False).digest():
            raise StorageError(f"stage block {block_id} of {name}: 400 Md5Mismatch", 400, "Md5Mismatch")
        self.staged.setdefault(name, {})[block_id] = bytes(data)

    async def create_media(
        self, name: str, data: bytes, md5: bytes, content_type: str, metadata: dict[str, str], tags: dict[str, str]
    ) -> bool:
        self._seen("put", name)
        await asyncio.sleep(0)
        if md5 != hashlib.md5(data, usedforsecurity=False).digest():
            raise StorageError(f"create {name}: 400 Md5Mismatch", 400, "Md5Mismatch")
        if name in self.blobs:
            return False
        self.blobs[name] = _Blob(
            bytes(data), content_type, dict(metadata), tags=dict(tags), created=self.clock(), content_md5=md5
        )
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
        """Consumes the body piece by piece as the service does; create-only, checked when the body has arrived."""
        self._seen("put", name)
        received = bytearray()
        try:
            async for piece in body:
                received += piece
                if len(received) > size:
                    raise StorageError(f"create {name}: 400 the body is longer than its Content-Length", 400)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"create {name}: the request broke off: {type(exc).__name__}") from exc
        if len(received) != size:
            raise StorageError(f"create {name}: 400 the body is shorter than its Content-Length", 400)
        if name in self.blobs:
            return None
        md5 = hashlib.md5(received, usedforsecurity=False).digest()
        self.blobs[name] = _Blob(
            bytes(received), content_type, dict(metadata), tags=dict(tags), created=self.clock(), content_md5=md5
        )
        return md5

    async def commit_new(
        self,
        name: str,
        block_ids: list[str],
        content_type: str,
        metadata: dict[str, str],
        tags: dict[str, str],
        content_md5: bytes | None = None,
    ) -> bool:
        self._seen("put-block-list", name)
        if name in self.blobs:
            return False
        staged = self.staged.get(name, {})
        missing = [b for b in block_ids if b not in staged]
        if missing:
            raise StorageError(f"commit {name}: 400 InvalidBlockList", 400, "InvalidBlockList")
        blocks = [StagedBlock(b, len(staged[b])) for b in block_ids]
        data = b"".join(staged[b] for b in block_ids)
        self.blobs[name] = _Blob(
            data, content_type, dict(metadata), blocks=blocks, tags=dict(tags), content_md5=content_md5
        )
        self.staged.pop(name, None)
        return True

    @asynccontextmanager
    async def lease(self, name: str, seconds: int, wait: float) -> AsyncIterator[bool]:
        if name not in self.blobs:  # the lock blob, as the real edge makes it on first use
            await self.create(name, b"", "application/octet-stream")
        self._seen("lease", name)
        held = self.leased.get(name)
        if held is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.wait(), wait)
        if name in self.leased:
            yield False
            return
        released = self.leased[name] = asyncio.Event()
        try:
            yield True
        finally:
            del self.leased[name]
            released.set()
            self._seen("lease", name)

    async def close(self) -> None:
        pass


@dataclass
class _FakePoisonMessage:
    content: str
    _queue: FakeQueue

    async def remove(self) -> None:
        self._queue.poison.remove(self.content)


class FakeQueue:
    def __init__(self, name: str = "recording-chunks") -> None:
        self.name = name
        self.poison_name = f"{name}-poison"
        self.messages: list[tuple[str, int]] = []  # (job text, seconds before it is visible)
        self.poison: list[str] = []
        self.requests: Counter[str] = Counter()

    async def ensure(self) -> None:
        self.requests["create-queue"] += 2

    async def enqueue(self, jobs: Sequence[RecordingChunk]) -> int:
        texts = [encode_job(job) for job in jobs]
        self.requests["send"] += len(texts)
        self.messages += [(text, 0) for text in texts]
        return len(texts)

    async def enqueue_later(self, job: RecordingChunk, delay_seconds: int) -> None:
        self.requests["send"] += 1
        self.messages.append((encode_job(job), max(0, delay_seconds)))

    async def send_poison(self, record: QuarantineRecord) -> None:
        self.requests["send"] += 1
        self.poison.append(record.to_json().decode())

    async def poison_messages(self, limit: int) -> AsyncIterator[_FakePoisonMessage]:
        for content in list(self.poison)[:limit]:
            yield _FakePoisonMessage(content, self)

    async def poison_count(self) -> int:
        return len(self.poison)

    async def close(self) -> None:
        pass

    def visible_jobs(self) -> list[str]:
        return [text for text, delay in self.messages if delay == 0]


@dataclass
class FakeRecording:
    media: bytes
    metadata: bytes
    declare_size: bool = True


@dataclass
class _FakeStream:
    start: int
    total: int | None
    body: bytes
    headers: dict[str, str]
    cut_after: int | None = None  # break the connection after this many bytes
    piece_delay: float = 0.0  # a slow link: seconds before each piece

    async def pieces(self) -> AsyncIterator[bytes]:
        sent = 0
        for offset in range(0, len(self.body), PIECE):
            piece = self.body[offset : offset + PIECE]
            if self.cut_after is not None and sent + len(piece) > self.cut_after:
                raise AcsTransientError("media body broke off: connection reset")
            sent += len(piece)
            await asyncio.sleep(self.piece_delay)
            yield piece


class FakeAcs:
    """Recordings by document id; a URL names its document in its path, as ACS's do."""

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        self.recordings: dict[str, FakeRecording] = {}
        self.deleted: set[str] = set()
        self.retry = retry or RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.001)
        self.requests: list[tuple[str, str, int]] = []  # (method, document id, offset)
        self.cut_next_media: list[int] = []  # break the next downloads after these many bytes
        self.fail_next_metadata = 0  # answer the next metadata requests with a transient error
        self.piece_delay = 0.0  # a slow link: seconds before each piece of media
        self.on_delete: Callable[[str], None] | None = None  # sees each DELETE before it is honoured

    def _document(self, url: str) -> str:
        parts = url.split("/")
        return parts[parts.index("objects") + 1]

    def _recording(self, url: str) -> FakeRecording:
        document = self._document(url)
        recording = self.recordings.get(document)
        if recording is None or document in self.deleted:
            raise RecordingGoneError(f"GET {url} -> 404: ACS no longer has this file", 404)
        return recording

    async def fetch_metadata(self, url: str) -> bytes:
        async def once() -> bytes:
            self.requests.append(("GET-metadata", self._document(url), 0))
            if self.fail_next_metadata:
                self.fail_next_metadata -= 1
                raise AcsTransientError("GET metadata -> 503", 503)
            return self._recording(url).metadata

        return await self.retry.call("GET metadata", once)

    @asynccontextmanager
    async def open_media(self, url: str, offset: int = 0) -> AsyncIterator[_FakeStream]:
        document = self._document(url)
        self.requests.append(("GET-media", document, offset))
        recording = self._recording(url)
        cut = self.cut_next_media.pop(0) if self.cut_next_media else None
        total = len(recording.media) if recording.declare_size else None
        headers = {"Content-Type": "video/mp4", "ETag": f'"{document}"', "Last-Modified": "Tue, 01 Dec 2026 08:00 GMT"}
        yield _FakeStream(offset, total, recording.media[offset:], headers, cut, self.piece_delay)

    async def delete(self, url: str) -> bool:
        async def once() -> bool:
            document = self._document(url)
            self.requests.append(("DELETE", document, 0))
            if document not in self.recordings or document in self.deleted:
                return False
            if self.on_delete is not None:
                self.on_delete(document)
            self.deleted.add(document)
            return True

        return await self.retry.call("DELETE", once)

    def count(self, method: str, document: str | None = None) -> int:
        return sum(1 for m, d, _o in self.requests if m == method and (document is None or d == document))


class FakePublisher:
    """The Event Grid topic: every batch it took, in order; ``fail_next`` batches are refused (PublishError)."""

    def __init__(self) -> None:
        self.batches: list[list[OutboundEvent]] = []
        self.refused: list[list[OutboundEvent]] = []
        self.fail_next = 0

    async def publish(self, events: Sequence[OutboundEvent]) -> None:
        if not events:
            return
        if self.fail_next:
            self.fail_next -= 1
            self.refused.append(list(events))
            raise PublishError("503: the topic is unavailable")
        self.batches.append(list(events))

    @property
    def events(self) -> list[OutboundEvent]:
        return [e for batch in self.batches for e in batch]

    async def close(self) -> None:
        return None
