"""Stream one recording file from ACS into staged blocks of a block blob.

Memory is bounded whatever the file's size: a transfer holds at most
``concurrency`` blocks being uploaded plus the one being filled, i.e.
``(concurrency + 1) × block_size`` (within the documented
``(concurrency + 2) × block_size``), and all the transfers of a process
together hold at most :data:`PROCESS_BUFFER_BUDGET` bytes of blocks: a
transfer that would exceed it stops reading its download (TCP back-pressure;
aiohttp suspends the read timeout while it is paused) until an upload ends.

Block ids are a function of (block size, position), so after a crash or a
broken connection the uncommitted block list tells exactly how far an earlier
attempt got, and the download resumes there with a Range request.

Each block is assembled with one copy (the pieces the socket delivered are
copied into the block's buffer, which is filled again once the block is staged
and hashed); the stream's sha256 and MD5 (in order) and, where the store wants
one, the block's own MD5 (the Content-MD5 the service checks; only over plain
http, see ``edges.archive.block_md5_wanted``) are computed on worker threads —
hashlib releases the GIL — so the event loop, which the webhook and every other
transfer share, only moves bytes. Its slot and budget are freed once it is both
staged and hashed. The whole file's MD5 becomes the committed blob's
Content-MD5, so any download can be checked with standard tools.

A file ACS says is over one block and within :func:`single_put_limit` (what a
resume would download twice anyway; 20 MiB at the defaults) is not staged: it
is streamed from the download straight into one Put Blob
(``ArchiveStore.put_media_stream``), hashed on the way, holding at most STREAM_HOLD of the
budget; the service's MD5 of what it stored must equal ours. Such a file has
nothing to resume from: a try that breaks off sends it again from byte 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from recording_pipeline.app.boundary import contained, interrupted
from recording_pipeline.core.attempts import AttemptProgress
from recording_pipeline.core.errors import (
    AcsTransientError,
    ArchiveIntegrityError,
    InterruptedOperationError,
    StorageError,
    StorageTransientError,
)
from recording_pipeline.core.ports import ArchiveStore, MediaStream, RecordingSource, StagedBlock

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# All transfers of one process together hold at most this many bytes of blocks (being filled, hashed or
# uploaded). Nothing copies a block on its way to the socket (``edges.archive._BlockBody``; Python 3.12+
# transports keep what the kernel did not take at once as views, not copies).
PROCESS_BUFFER_BUDGET = 32 * MIB
# A file ACS says is larger than one block and within single_put_limit is streamed into one Put Blob instead of
# staged blocks and a commit: fewer requests, less work for the service. It gives up resuming inside the file: a
# try that breaks off sends it again. The limit is what a resume downloads twice anyway — the blocks in flight,
# (concurrency + 1) × block (20 MiB at the defaults) — and never more than this:
SINGLE_PUT_LIMIT = 64 * MIB
HASH_BATCH = 256 * 1024  # a streamed Put Blob hashes the pieces it sent in thread jobs of about this size
# What a streamed Put Blob keeps alive, and holds of the process budget: the pieces handed to the hash jobs (at
# most 4 batches), the batch gathering, and the piece in hand (ACS's reads are up to 1 MiB).
STREAM_HOLD = 2 * MIB
_TRANSIENT_STORAGE = {None, 408, 429, 500, 502, 503, 504}  # no answer, or one worth asking again


# How a file of one request is created, given by the transfer to ``create_whole``: (content type, metadata, index
# tags) -> created (False: the blob already existed).
WholePut = Callable[[str, dict[str, str], dict[str, str]], Awaitable[bool]]
# ``create_whole(size, sha256, put)``: the caller names the metadata (``sha256`` is None when the file is streamed:
# the request's headers go before its body) and calls ``put``; it answers whether the blob was created.
CreateWhole = Callable[[int, str | None, WholePut], Awaitable[bool]]


def single_put_limit(block_size: int, concurrency: int) -> int:
    """The largest file streamed into one Put Blob: no more than a resume would download twice."""
    return min(SINGLE_PUT_LIMIT, (concurrency + 1) * block_size)


def block_id(index: int, block_size: int) -> str:
    """Same length for every block of a blob, as the service requires."""
    return f"blk-{block_size:010d}-{index:08d}"


def resume_count(staged: list[StagedBlock], block_size: int) -> int:
    """How many leading full blocks an earlier attempt already staged."""
    sizes = {b.block_id: b.size for b in staged}
    count = 0
    while sizes.get(block_id(count, block_size)) == block_size:
        count += 1
    return count


@dataclass(frozen=True)
class TransferResult:
    block_ids: list[str]
    size: int
    sha256: str | None  # None when resumed: the earlier bytes are only in the archive
    resumed_from: int
    size_declared: bool  # ACS stated the file's size: the byte count was checked against it
    declared: dict[str, str]  # what ACS's answer declared about the file (content type, ETag, last modified)
    block_size: int
    created_whole: bool | None = None  # one Put Blob: True, created by it; False, it existed. None: staged
    content_md5: bytes | None = None  # the whole file's MD5, when this attempt hashed all of it (not resumed)

    @property
    def blocks(self) -> list[StagedBlock]:
        """The blocks in order, with their sizes: every one full but the last."""
        last = self.size - (len(self.block_ids) - 1) * self.block_size
        return [
            StagedBlock(bid, self.block_size if i < len(self.block_ids) - 1 else last)
            for i, bid in enumerate(self.block_ids)
        ]


class BufferBudget:
    """Bytes of block buffers shared by the transfers of one event loop.

    Downloads already open are served first, first come first served, so none of them starves; a download
    is opened only when they leave room, the transfer that started first first. So few downloads are open
    (and paused, holding socket buffers) at once, and the oldest chunks are archived first. A request larger
    than the whole budget is granted when nothing else is held, so it never waits forever.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._tickets = itertools.count()
        self._waiters: list[tuple[tuple[int, int], int, int, asyncio.Future[None]]] = []

    def ticket(self) -> int:
        """A transfer's place in the queue for opening its download: earlier transfers open first."""
        return next(self._tickets)

    async def acquire(self, size: int, opening: int | None = None) -> None:
        """``size`` bytes; ``opening``: the ticket of a transfer about to open its download, else None."""
        if not self._waiters and self._fits(size):
            self.held += size
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        order = next(self._tickets)
        key = (1, opening) if opening is not None else (0, order)
        heapq.heappush(self._waiters, (key, order, size, granted))
        self._grant()  # drops waiters that gave up, and grants at once if we are first and it fits
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(size)  # granted just as we were cancelled
            else:
                granted.cancel()
                self._grant()
            raise

    def release(self, size: int) -> None:
        self.held -= size
        self._grant()

    def _fits(self, size: int) -> bool:
        return self.held + size <= self.capacity or self.held == 0

    def _grant(self) -> None:
        while self._waiters:
            _key, _order, size, granted = self._waiters[0]
            if granted.done():
                heapq.heappop(self._waiters)
                continue
            if not self._fits(size):
                return
            heapq.heappop(self._waiters)
            self.held += size
            granted.set_result(None)


_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BufferBudget] = weakref.WeakKeyDictionary()


def process_budget() -> BufferBudget:
    """The budget shared by every transfer running on the current event loop."""
    loop = asyncio.get_running_loop()
    budget = _budgets.get(loop)
    if budget is None:
        budget = _budgets[loop] = BufferBudget(PROCESS_BUFFER_BUDGET)
    return budget


class _Transfer:
    def __init__(
        self,
        acs: RecordingSource,
        store: ArchiveStore,
        url: str,
        blob: str,
        block_size: int,
        concurrency: int,
        resume_blocks: int,
        budget: BufferBudget,
        progress: AttemptProgress,
        create_whole: CreateWhole | None = None,
    ) -> None:
        self.acs, self.store, self.url, self.blob = acs, store, url, blob
        self.block_size = block_size
        self.block_ids = [block_id(i, block_size) for i in range(resume_blocks)]
        self.offset = resume_blocks * block_size
        self.resumed_from = self.offset
        self.received = 0  # bytes that arrived from ACS in this transfer, kept or not: the retries' sign of life
        self.total: int | None = None
        self.declared: dict[str, str] = {}
        self.hasher = hashlib.sha256() if resume_blocks == 0 else None
        # The whole file's MD5, for the committed blob's Content-MD5 (a resumed copy never sees it whole).
        self.md5 = hashlib.md5(usedforsecurity=False) if resume_blocks == 0 else None
        self._budget = budget
        self._progress = progress
        self._ticket = budget.ticket()
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency + 1)  # blocks uploading + the one being filled
        self._uploads: set[asyncio.Task[None]] = set()
        # Full-size block buffers whose upload has ended, to fill again: a fresh bytearray per block is zeroed and
        # faulted in before it is filled, and one run at 1 GiB peaked 7 MiB higher (112 against 105 MiB) with them.
        self._spare: list[bytearray] = []
        self._hash_tail: asyncio.Task[None] | None = None
        self._failure: Exception | None = None
        self._create_whole = create_whole
        self.created_whole: bool | None = None
        self.whole_sha256: str | None = None
        self.whole_md5: bytes | None = None

    async def attempt(self) -> None:
        """Download from ``self.offset`` to the end; staged progress survives a failed attempt."""
        await self._reserve(opening=True)  # room for the first block before the download is even opened
        reserved = True
        try:
            async with self.acs.open_media(self.url, self.offset) as stream:
                skip = self.offset - stream.start  # > 0 when the server ignored our Range
                if skip < 0:
                    raise AcsTransientError(f"asked for bytes from {self.offset}, got them from {stream.start}")
                self.total = stream.total if stream.total is not None else self.total
                self.declared = self.declared or dict(stream.headers)
                if self.total == 0:
                    raise AcsTransientError("ACS answered with an empty recording (it does when the file is not ready)")
                if self._streams_whole():
                    # It keeps far less than a block alive: the rest of the reservation goes back while it runs.
                    hold = min(STREAM_HOLD, self.block_size)
                    self._budget.release(self.block_size - hold)
                    reserved = False
                    try:
                        await self._put_streamed(stream)
                    finally:
                        self._budget.release(hold)
                        self._slots.release()
                    return
                block: bytearray | None = None  # the block being filled, its size allocated once
                filled = 0
                async for piece in stream.pieces():
                    self.received += len(piece)
                    view = memoryview(piece)
                    if skip:
                        drop = min(skip, len(view))
                        view, skip = view[drop:], skip - drop
                    while len(view):
                        if not reserved:
                            await self._reserve()
                            reserved = True
                        if block is None:
                            block = self._buffer(self._next_block_size())
                        take = min(len(block) - filled, len(view))
                        block[filled : filled + take] = view[:take]  # the one copy: the socket's piece into the block
                        filled += take
                        view = view[take:]
                        if filled == len(block):
                            reserved = False
                            self._submit(block)
                            block, filled = None, 0
                    await self._raise_upload_failure()
                    if not reserved and (self.total is None or self.offset < self.total):
                        # Room for the next block before reading on: while we wait, the socket stays paused.
                        await self._reserve()
                        reserved = True
                if block is not None and filled:
                    reserved = False
                    del block[filled:]  # a file of undeclared size ended inside a block
                    self._submit(block)
        finally:
            if reserved:
                self._release()
        if self.offset == 0:
            raise AcsTransientError("ACS answered with an empty recording (it does when the file is not ready)")
        if self.total is not None and self.offset != self.total:
            raise AcsTransientError(f"body ended at byte {self.offset} of {self.total}")

    def _streams_whole(self) -> bool:
        """One streamed Put Blob: a fresh copy, from byte 0, of a file ACS says is over a block and within
        single_put_limit."""
        return (
            self._create_whole is not None
            and self.offset == 0
            and not self.block_ids
            and self.total is not None
            and self.block_size < self.total <= single_put_limit(self.block_size, self._concurrency)
        )

    async def _put_streamed(self, stream: MediaStream) -> None:
        """Stream the whole file into one Put Blob; on success ``offset`` is its size, on failure still 0."""
        assert self._create_whole is not None and self.total is not None
        store, total = self.store, self.total
        # What the stream keeps alive for hashing, at most: 4 batches handed to the hash jobs, one gathering, and
        # the piece in hand — within the STREAM_HOLD of budget this transfer holds meanwhile.
        hold = min(STREAM_HOLD, self.block_size)
        hashing = _InOrderHashing(hold // 2)
        batch_size = max(1, min(HASH_BATCH, hold // 8))
        sent = 0
        source_failure: list[Exception] = []

        async def body() -> AsyncGenerator[bytes]:
            nonlocal sent
            batch: list[bytes] = []
            batched = 0
            try:
                async for piece in stream.pieces():
                    self.received += len(piece)
                    if sent + len(piece) > total:
                        raise AcsTransientError(f"body ran past the {total} bytes ACS declared")
                    sent += len(piece)
                    batch.append(piece)
                    batched += len(piece)
                    if batched >= batch_size:
                        await hashing.add(batch, batched)  # waits while half of what it holds is not hashed yet
                        batch, batched = [], 0
                    yield piece
                if batch:
                    await hashing.add(batch, batched)
                if sent != total:
                    raise AcsTransientError(f"body ended at byte {sent} of {total}")
            except Exception as exc:  # the download's own failure; a CancelledError here is the sink's doing
                source_failure.append(exc)
                raise

        async def put(content_type: str, metadata: dict[str, str], tags: dict[str, str]) -> bool:
            pieces = body()
            try:
                # When the connection resets, aiohttp cancels the task sending the body: that CancelledError is
                # the Put Blob's failure, not this invocation's end.
                with contained(f"the Put Blob of {self.blob}"):
                    stored_md5 = await store.put_media_stream(self.blob, pieces, total, content_type, metadata, tags)
            except Exception as exc:
                if source_failure:  # the download broke off: the Put Blob failed because its body did
                    raise source_failure[0] from None
                if isinstance(exc, InterruptedOperationError) or (
                    isinstance(exc, StorageError) and exc.status in _TRANSIENT_STORAGE
                ):
                    # The SDK cannot replay a streamed body: the file is downloaded and sent again, retried as a
                    # download that broke off is.
                    status = exc.status if isinstance(exc, StorageError) else None
                    raise StorageTransientError(
                        f"the Put Blob of {self.blob} broke off, sending the file again: {exc}", status
                    ) from exc
                raise
            finally:
                with contextlib.suppress(RuntimeError):  # still being sent: it ends with its request
                    await pieces.aclose()
                await hashing.abandon_unless_done()
            if stored_md5 is None:
                return False  # another attempt created it; what it holds is checked by reading it back
            md5, sha256 = await hashing.digests()
            if stored_md5 != md5:
                raise ArchiveIntegrityError(
                    f"{self.blob}: the service's MD5 of what it stored differs from the MD5 of what was sent"
                )
            self.whole_md5, self.whole_sha256 = md5, sha256
            return True

        self.created_whole = await self._create_whole(total, None, put)
        self.offset = total
        self._progress.staged_bytes += total

    async def _reserve(self, opening: bool = False) -> None:
        """Room for one more block: a slot of this transfer, then bytes of the process budget."""
        await self._slots.acquire()
        try:
            await self._budget.acquire(self.block_size, self._ticket if opening else None)
        except BaseException:
            self._slots.release()
            raise

    def _release(self) -> None:
        self._budget.release(self.block_size)
        self._slots.release()

    def _next_block_size(self) -> int:
        """A full block, or what is left of the size ACS declared (a body running past it fills a full one, and
        fails at the end)."""
        left = self.total - self.offset if self.total is not None else 0
        return left if 0 < left < self.block_size else self.block_size

    def _submit(self, block: bytearray) -> None:
        """Stage ``block`` (its room was reserved before its first byte was read)."""
        if self._create_whole is not None and not self.block_ids and self.total == len(block) and not self.offset:
            # The whole file is this one block: one Put Blob creates the blob, nothing is staged or committed.
            self.offset += len(block)
            self._track(asyncio.create_task(self._put_whole(block)), block)
            return
        bid = block_id(len(self.block_ids), self.block_size)
        self.block_ids.append(bid)
        self.offset += len(block)
        hashed = None
        if self.hasher is not None:
            hashed = self._hash_tail = asyncio.create_task(_hash_after(self._hash_tail, self.hasher, self.md5, block))
        self._track(asyncio.create_task(self._stage(bid, block, hashed)), block)

    def _track(self, task: asyncio.Task[None], block: bytearray) -> None:
        self._uploads.add(task)
        task.add_done_callback(self._uploads.discard)
        # Released when the task ends however it ends: a task cancelled before its first step never runs its
        # own ``finally``, and its reservation would be held for the life of the process.
        task.add_done_callback(lambda _task: self._release())
        if len(block) == self.block_size:
            task.add_done_callback(lambda done: self._reuse(done, block))

    def _reuse(self, task: asyncio.Task[None], block: bytearray) -> None:
        """A block staged and hashed is read by nothing any more: the next block can be filled into it. One whose
        upload failed or was cancelled may still be read (by its hash thread), so it is left alone."""
        if not task.cancelled() and task.exception() is None:
            self._spare.append(block)

    def _buffer(self, size: int) -> bytearray:
        """A buffer for the next block: a spare one of a full block's size, else a new one."""
        return self._spare.pop() if size == self.block_size and self._spare else bytearray(size)

    async def _put_whole(self, block: bytearray) -> None:
        assert self._create_whole is not None
        store, blob = self.store, self.blob
        try:
            md5, sha256 = await asyncio.to_thread(_md5_and_sha256, block)

            async def put(content_type: str, metadata: dict[str, str], tags: dict[str, str]) -> bool:
                return await store.create_media(blob, _as_bytes(block), md5, content_type, metadata, tags)

            self.created_whole = await self._create_whole(len(block), sha256, put)
            self.whole_sha256, self.whole_md5 = sha256, md5
            self._progress.staged_bytes += len(block)
        except BaseException as exc:
            failure = self._failed(exc, f"the Put Blob of {blob}")
            if failure is exc:
                raise
            raise failure from exc

    async def _stage(self, bid: str, block: bytearray, hashed: asyncio.Task[None] | None) -> None:
        try:
            md5 = await asyncio.to_thread(_md5, block) if self.store.block_md5 else None
            await self.store.stage_block(self.blob, bid, _as_bytes(block), md5)
            self._progress.staged_bytes += len(block)
            if hashed is not None:
                await asyncio.shield(hashed)  # the buffer is free once it is both uploaded and hashed
        except BaseException as exc:
            failure = self._failed(exc, f"stage block {bid} of {self.blob}")
            if failure is exc:
                raise
            raise failure from exc

    def _failed(self, exc: BaseException, what: str) -> BaseException:
        """An upload task's failure, kept for ``finish``: a finished task leaves self._uploads at once, so its
        exception would go unseen and the commit would name a block that was never staged. A cancellation by
        ``abandon`` is returned as it is; one the task was not asked for becomes the upload's ordinary failure."""
        failure: Exception | None = exc if isinstance(exc, Exception) else interrupted(exc, what)
        if failure is None:
            return exc
        if self._failure is None:
            self._failure = failure
        return failure

    async def _raise_upload_failure(self) -> None:
        if self._failure is not None:
            await self.finish()

    async def finish(self) -> None:
        """Wait for every staged block and the hash; the first upload failure is raised."""
        pending = list(self._uploads)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await _returned(pending)
        if self._failure is not None:
            raise self._failure
        if self._hash_tail is not None:
            await self._hash_tail

    async def abandon(self) -> None:
        pending = list(self._uploads)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await _returned(pending)
        if self._hash_tail is not None:
            self._hash_tail.cancel()
            await asyncio.gather(self._hash_tail, return_exceptions=True)


async def _returned(tasks: list[asyncio.Task[None]]) -> None:
    """Let the done callbacks of finished tasks run (their buffer reservations are returned there): ``gather`` of
    tasks already done completes without yielding to the loop, before the callbacks scheduled when they ended."""
    if tasks:
        await asyncio.sleep(0)


def _as_bytes(block: bytearray) -> bytes:
    """The block as the stores' ``data: bytes``: a staged block is only read as a buffer (the SDK hands it to
    aiohttp, which sends a bytearray as it sends bytes), so it is passed as it is; ``BlobArchive.create_media``
    alone copies it (``upload_blob`` reads a bytearray as an iterable of ints), a file of one block."""
    return cast(bytes, block)


def _md5(block: bytes | bytearray) -> bytes:
    return hashlib.md5(block, usedforsecurity=False).digest()


def _md5_and_sha256(block: bytes | bytearray) -> tuple[bytes, str]:
    return _md5(block), hashlib.sha256(block).hexdigest()


def _update(hashers: tuple[hashlib._Hash, ...], pieces: list[bytes] | list[bytearray]) -> None:
    for piece in pieces:
        for hasher in hashers:
            hasher.update(piece)


async def _hash_after(
    previous: asyncio.Task[None] | None, hasher: hashlib._Hash, md5: hashlib._Hash | None, block: bytearray
) -> None:
    if previous is not None:
        await previous
    await asyncio.to_thread(_update, (hasher, md5) if md5 is not None else (hasher,), [block])


class _InOrderHashing:
    """The MD5 and sha256 of a stream, updated on worker threads in the stream's order, one batch at a time;
    ``add`` waits while more than ``limit`` bytes handed to it are not hashed yet, so the pieces it keeps alive
    stay within the STREAM_HOLD of budget the transfer holds while it streams."""

    def __init__(self, limit: int) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._limit = limit
        self._pending = 0
        self._tail: asyncio.Task[None] | None = None

    async def add(self, pieces: list[bytes], size: int) -> None:
        while self._tail is not None and self._pending + size > self._limit and not self._tail.done():
            await asyncio.shield(self._tail)
        self._pending += size
        self._tail = asyncio.create_task(self._after(self._tail, pieces, size))

    async def _after(self, previous: asyncio.Task[None] | None, pieces: list[bytes], size: int) -> None:
        try:
            if previous is not None:
                await previous
            await asyncio.to_thread(_update, (self._md5, self._sha256), pieces)
        finally:
            self._pending -= size

    async def digests(self) -> tuple[bytes, str]:
        if self._tail is not None:
            await self._tail
        return self._md5.digest(), self._sha256.hexdigest()

    async def abandon_unless_done(self) -> None:
        """Let a running hash finish (its thread cannot be stopped) so nothing outlives the transfer's budget."""
        if self._tail is not None:
            await asyncio.gather(self._tail, return_exceptions=True)


async def copy_to_blocks(
    acs: RecordingSource,
    store: ArchiveStore,
    url: str,
    blob: str,
    block_size: int,
    concurrency: int,
    budget: BufferBudget | None = None,
    progress: AttemptProgress | None = None,
    fresh: bool = False,
    create_whole: CreateWhole | None = None,
) -> TransferResult:
    """Stage the whole file at ``url`` as blocks of ``blob`` (uncommitted), resuming if possible.

    ``fresh``: the caller knows nothing was staged before (it claimed the chunk), so the block list is not read.
    ``create_whole(size, sha256, put)``: with ``fresh``, a file ACS says fits in one block, or is within
    ``single_put_limit``, is not staged but created by one Put Blob: the caller
    names its metadata and calls ``put``; its answer is ``created_whole``.
    """
    budget = budget or process_budget()
    resume = 0 if fresh else resume_count(await store.uncommitted_blocks(blob), block_size)
    if resume:
        log.info("resuming %s after %d staged blocks (%d bytes)", blob, resume, resume * block_size)
    transfer = _Transfer(
        acs,
        store,
        url,
        blob,
        block_size,
        concurrency,
        resume,
        budget,
        progress or AttemptProgress(),
        create_whole if fresh else None,
    )
    try:
        # A try that staged whole blocks starts a new streak of the retry budget: long transfers resume in place;
        # one that received anything is retried without a longer wait.
        with contained(f"the transfer of {blob}"):
            await acs.retry.call(
                f"download {blob}",
                transfer.attempt,
                progress=lambda: transfer.offset,
                received=lambda: transfer.received,
            )
            await transfer.finish()
    except BaseException:
        await transfer.abandon()
        raise
    whole = transfer.created_whole is not None
    digest = transfer.whole_sha256 if whole else transfer.hasher.hexdigest() if transfer.hasher is not None else None
    md5 = transfer.whole_md5 if whole else transfer.md5.digest() if transfer.md5 is not None else None
    return TransferResult(
        transfer.block_ids,
        transfer.offset,
        digest,
        transfer.resumed_from,
        transfer.total is not None,
        transfer.declared,
        block_size,
        transfer.created_whole,
        md5,
    )


async def commit_blocks(
    store: ArchiveStore,
    name: str,
    result: TransferResult,
    content_type: str,
    metadata: dict[str, str],
    tags: dict[str, str],
) -> bool:
    """Commit what ``result`` staged as a new blob (``ArchiveStore.commit_new``), with the whole file's MD5 as
    its Content-MD5 when this attempt hashed all of it."""
    return await store.commit_new(name, result.block_ids, content_type, metadata, tags, result.content_md5)
