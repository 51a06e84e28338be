"""Stream one recording file from ACS into staged blocks of a block blob.

Memory is bounded by ``(concurrency + 2) × block_size`` whatever the file's
size. Block ids are a function of (block size, position), so after a crash or
a broken connection the uncommitted block list tells exactly how far an
earlier attempt got, and the download resumes there with a Range request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from .acs import AcsRecordingClient
from .archive import ArchiveStore, StagedBlock
from .errors import AcsTransientError

log = logging.getLogger(__name__)


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
    bytes_downloaded: int


class _Transfer:
    def __init__(
        self,
        acs: AcsRecordingClient,
        store: ArchiveStore,
        url: str,
        blob: str,
        block_size: int,
        concurrency: int,
        resume_blocks: int,
    ) -> None:
        self.acs, self.store, self.url, self.blob = acs, store, url, blob
        self.block_size = block_size
        self.block_ids = [block_id(i, block_size) for i in range(resume_blocks)]
        self.offset = resume_blocks * block_size
        self.resumed_from = self.offset
        self.downloaded = 0
        self.total: int | None = None
        self.hasher = hashlib.sha256() if resume_blocks == 0 else None
        self._slots = asyncio.Semaphore(concurrency)
        self._uploads: set[asyncio.Task[None]] = set()
        self._hash_tail: asyncio.Task[None] | None = None

    async def attempt(self) -> None:
        """Download from ``self.offset`` to the end; staged progress survives a failed attempt."""
        async with self.acs.open_media(self.url, self.offset) as stream:
            skip = self.offset - stream.start  # > 0 when the server ignored our Range
            if skip < 0:
                raise AcsTransientError(f"asked for bytes from {self.offset}, got them from {stream.start}")
            self.total = stream.total if stream.total is not None else self.total
            if self.total == 0:
                raise AcsTransientError("ACS answered with an empty recording (it does when the file is not ready)")
            buffer = bytearray()
            async for piece in stream.pieces():
                self.downloaded += len(piece)
                if skip:
                    drop = min(skip, len(piece))
                    piece, skip = piece[drop:], skip - drop
                buffer += piece
                while len(buffer) >= self.block_size:
                    await self._submit(bytes(buffer[: self.block_size]))
                    del buffer[: self.block_size]
                await self._raise_upload_failure()
            if buffer:
                await self._submit(bytes(buffer))
            if self.offset == 0:
                raise AcsTransientError("ACS answered with an empty recording (it does when the file is not ready)")
            if self.total is not None and self.offset != self.total:
                raise AcsTransientError(f"body ended at byte {self.offset} of {self.total}")

    async def _submit(self, block: bytes) -> None:
        await self._slots.acquire()
        index = len(self.block_ids)
        self.block_ids.append(block_id(index, self.block_size))
        self.offset += len(block)
        if self.hasher is not None:
            self._hash_tail = asyncio.create_task(_hash_after(self._hash_tail, self.hasher, block))
        task = asyncio.create_task(self._stage(self.block_ids[-1], block))
        self._uploads.add(task)
        task.add_done_callback(self._uploads.discard)

    async def _stage(self, bid: str, block: bytes) -> None:
        try:
            await self.store.stage_block(self.blob, bid, block)
        finally:
            self._slots.release()

    async def _raise_upload_failure(self) -> None:
        for task in list(self._uploads):
            if task.done() and task.exception() is not None:
                await self.finish()

    async def finish(self) -> None:
        """Wait for every staged block and the hash; the first upload failure is raised."""
        pending = list(self._uploads)
        if pending:
            await asyncio.gather(*pending)
        if self._hash_tail is not None:
            await self._hash_tail

    async def abandon(self) -> None:
        for task in list(self._uploads):
            task.cancel()
        await asyncio.gather(*self._uploads, return_exceptions=True)
        if self._hash_tail is not None:
            self._hash_tail.cancel()
            await asyncio.gather(self._hash_tail, return_exceptions=True)


async def _hash_after(previous: asyncio.Task[None] | None, hasher: hashlib._Hash, block: bytes) -> None:
    if previous is not None:
        await previous
    await asyncio.to_thread(hasher.update, block)


async def copy_to_blocks(
    acs: AcsRecordingClient,
    store: ArchiveStore,
    url: str,
    blob: str,
    block_size: int,
    concurrency: int,
) -> TransferResult:
    """Stage the whole file at ``url`` as blocks of ``blob`` (uncommitted), resuming if possible."""
    resume = resume_count(await store.uncommitted_blocks(blob), block_size)
    if resume:
        log.info("resuming %s after %d staged blocks (%d bytes)", blob, resume, resume * block_size)
    transfer = _Transfer(acs, store, url, blob, block_size, concurrency, resume)
    try:
        await acs.retry.call(f"download {blob}", transfer.attempt)
        await transfer.finish()
    except BaseException:
        await transfer.abandon()
        raise
    digest = transfer.hasher.hexdigest() if transfer.hasher is not None else None
    return TransferResult(transfer.block_ids, transfer.offset, digest, transfer.resumed_from, transfer.downloaded)
