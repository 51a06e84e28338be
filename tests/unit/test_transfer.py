"""The streaming copy engine on its own: failures, the process-wide buffer budget, and which way a file goes
(staged blocks, or one Put Blob), with which digests."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from recording_pipeline.app import transfer as transfer_module
from recording_pipeline.app.transfer import (
    HASH_BATCH,
    STREAM_HOLD,
    BufferBudget,
    CreateWhole,
    TransferResult,
    WholePut,
    commit_blocks,
    copy_to_blocks,
    single_put_limit,
)
from recording_pipeline.core.errors import (
    AcsTransientError,
    ArchiveIntegrityError,
    InterruptedOperationError,
    StorageError,
    StorageTransientError,
)
from recording_pipeline.core.ports import StagedBlock
from recording_pipeline.edges.retry import RetryPolicy

MIB = 1024 * 1024
BLOCK = 64 * 1024


@dataclass
class _CutOffStream:
    """A body that delivers ``sent`` bytes (from the start; nothing on a resumed try) and then breaks, without
    waiting between pieces."""

    start: int
    total: int
    sent: int
    headers: dict[str, str] = field(default_factory=dict)

    async def pieces(self) -> AsyncIterator[bytes]:
        for _ in range(self.sent // BLOCK if self.start == 0 else 0):
            yield bytes(BLOCK)
        raise AcsTransientError("media body broke off: ClientPayloadError")


class _CutOffSource:
    def __init__(self, total: int, sent: int, tries: int) -> None:
        self.total, self.sent = total, sent
        self.retry = RetryPolicy(attempts=tries, initial_wait=0.001, max_wait=0.001)

    @asynccontextmanager
    async def open_media(self, url: str, offset: int = 0) -> AsyncIterator[_CutOffStream]:
        yield _CutOffStream(offset, self.total, self.sent)


class _Blocks:
    """Only what staging reads and writes: the block list."""

    block_md5 = True

    def __init__(self) -> None:
        self.staged: dict[str, int] = {}

    async def uncommitted_blocks(self, name: str) -> list[StagedBlock]:
        return [StagedBlock(b, n) for b, n in self.staged.items()]

    async def stage_block(self, name: str, block_id: str, data: bytes | memoryview, md5: bytes | None = None) -> None:
        self.staged[block_id] = len(data)


@pytest.mark.parametrize("tries", [1, 3])
async def test_failed_transfers_leave_no_buffer_budget_held(tries: int) -> None:
    """The last try fills a block and breaks in the same step, so that block's upload is cancelled before it
    ever ran; its reservation must come back all the same, transfer after transfer."""
    budget = BufferBudget(32 * MIB)
    for transfer in range(7):
        source = _CutOffSource(total=16 * BLOCK, sent=3 * BLOCK, tries=tries)
        with pytest.raises(AcsTransientError, match="broke off"):
            await copy_to_blocks(source, _Blocks(), "u", f"b{transfer}", BLOCK, 4, budget)  # type: ignore[arg-type]
        assert budget.held == 0, f"{budget.held // BLOCK} blocks still held after failed transfer {transfer + 1}"


class _SlowSource:
    """A slow source on a simulated clock whose connection breaks after every ``per_try`` bytes."""

    def __init__(self, total: int, per_try: int, policy: RetryPolicy) -> None:
        self.total, self.per_try = total, per_try
        self.retry = policy
        self.opened_at: list[int] = []

    @asynccontextmanager
    async def open_media(self, url: str, offset: int = 0) -> AsyncIterator[_SlowStream]:
        self.opened_at.append(offset)
        yield _SlowStream(offset, self.total, self)


@dataclass
class _SlowStream:
    start: int
    total: int
    source: _SlowSource
    headers: dict[str, str] = field(default_factory=dict)

    async def pieces(self) -> AsyncIterator[bytes]:
        end = min(self.total, self.start + self.source.per_try)
        for _ in range(self.start, end, BLOCK):
            _CLOCK[0] += BLOCK / RATE
            yield bytes(BLOCK)
        if end < self.total:
            raise AcsTransientError("media body broke off: connection reset")


RATE = 20_000  # bytes per simulated second: a slow link keeps the test small
_CLOCK = [0.0]


async def test_a_reset_after_the_budget_resumes_in_place_because_the_budget_is_per_streak() -> None:
    """A connection reset in minute 11 of a transfer whose retry budget is 10 minutes: bytes arrived since the
    last failure, so it is a new streak, and the download resumes with the next Range instead of giving up."""
    _CLOCK[0] = 0.0
    policy = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.001, budget_seconds=600, clock=lambda: _CLOCK[0])
    eleven_minutes = (11 * 60 * RATE) // BLOCK * BLOCK
    source = _SlowSource(total=3 * eleven_minutes + 5 * BLOCK, per_try=eleven_minutes, policy=policy)
    blocks = _Blocks()
    result = await copy_to_blocks(source, blocks, "u", "slow.mp4", BLOCK, 4, BufferBudget(MIB))  # type: ignore[arg-type]
    assert result.size == source.total
    assert source.opened_at == [0, eleven_minutes, 2 * eleven_minutes, 3 * eleven_minutes]
    assert _CLOCK[0] > 3 * 600  # the whole copy took far longer than one budget


async def test_a_streak_without_progress_still_ends_at_its_budget() -> None:
    """Tries that move nothing forward share one budget: a source that never sends a byte is given up on."""
    _CLOCK[0] = 0.0
    policy = RetryPolicy(attempts=100, initial_wait=0.001, max_wait=0.001, budget_seconds=600, clock=lambda: _CLOCK[0])

    class Dead(_SlowSource):
        @asynccontextmanager
        async def open_media(self, url: str, offset: int = 0) -> AsyncIterator[_SlowStream]:
            _CLOCK[0] += 100  # each try waits 100 simulated seconds for nothing
            raise AcsTransientError("connection timed out")
            yield  # pragma: no cover

    source = Dead(total=10 * BLOCK, per_try=0, policy=policy)
    with pytest.raises(AcsTransientError, match="timed out"):
        await copy_to_blocks(source, _Blocks(), "u", "dead.mp4", BLOCK, 4, BufferBudget(MIB))  # type: ignore[arg-type]
    assert 600 <= _CLOCK[0] <= 700


# --- one streamed Put Blob or staged blocks, and what decides between the ways ----------------------------------


def _content(total: int) -> bytes:
    return bytes(i % 251 for i in range(total))


@dataclass
class _Stream:
    start: int
    data: bytes
    source: _Source
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.data)

    async def pieces(self) -> AsyncIterator[bytes]:
        end = len(self.data) if self.source.break_at is None else self.source.break_at
        self.source.break_at = None  # only the first try breaks
        for at in range(self.start, len(self.data), PIECE):
            if at >= end:
                raise AcsTransientError("media body broke off: connection reset")
            piece = self.data[at : at + PIECE]
            self.source.served += len(piece)
            await asyncio.sleep(0)
            yield piece


PIECE = 16 * 1024


class _Source:
    def __init__(self, data: bytes, break_at: int | None = None) -> None:
        self.data, self.break_at = data, break_at
        self.retry = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.001)
        self.opened_at: list[int] = []
        self.served = 0

    @asynccontextmanager
    async def open_media(self, url: str, offset: int = 0) -> AsyncIterator[_Stream]:
        self.opened_at.append(offset)
        yield _Stream(offset, self.data, self)


class _Streaming(_Blocks):
    """An archive in memory: a Put Blob that consumes its body piece by piece, and answers the MD5 of what it
    stored as the service does."""

    def __init__(self, block_md5: bool = False, source: _Source | None = None) -> None:
        super().__init__()
        self.block_md5 = block_md5
        self.source = source
        self.blobs: dict[str, bytes] = {}
        self.block_md5s: list[bytes | None] = []
        self.commits: list[tuple[str, bytes | None]] = []
        self.puts = 0
        self.served_at_first_piece: int | None = None
        self.fail_puts: list[StorageError] = []
        self.corrupt = False

    async def stage_block(self, name: str, block_id: str, data: bytes | memoryview, md5: bytes | None = None) -> None:
        self.block_md5s.append(md5)
        await super().stage_block(name, block_id, data, md5)

    async def create_media(
        self, name: str, data: bytes, md5: bytes, content_type: str, metadata: dict[str, str], tags: dict[str, str]
    ) -> bool:
        self.blobs[name] = data
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
        self.puts += 1
        received = bytearray()
        async for piece in body:
            if self.served_at_first_piece is None and self.source is not None:
                self.served_at_first_piece = self.source.served
            received += piece
            if self.fail_puts and len(received) > size // 2:
                raise self.fail_puts.pop(0)
        if len(received) != size:
            raise StorageError(f"create {name}: 400 the body is shorter than its Content-Length", 400)
        if name in self.blobs:
            return None
        if self.corrupt:
            received[0] ^= 1  # a flipped bit the transport did not catch
        self.blobs[name] = bytes(received)
        return hashlib.md5(received, usedforsecurity=False).digest()

    async def commit_new(
        self,
        name: str,
        block_ids: list[str],
        content_type: str,
        metadata: dict[str, str],
        tags: dict[str, str],
        content_md5: bytes | None = None,
    ) -> bool:
        self.commits.append((name, content_md5))
        return True


def _whole(created: list[tuple[int, str | None]]) -> CreateWhole:
    async def create_whole(size: int, sha256: str | None, put: WholePut) -> bool:
        created.append((size, sha256))
        return await put("video/mp4", {"source_size": str(size)}, {"kind": "media"})

    return create_whole


async def _fresh_copy(
    source: _Source,
    store: _Streaming,
    budget: BufferBudget | None = None,
    created: list[tuple[int, str | None]] | None = None,
) -> TransferResult:
    """A claimed chunk's first copy, as the worker starts it: nothing staged before, a single Put Blob allowed."""
    return await copy_to_blocks(
        source,  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        "u",
        "m.mp4",
        BLOCK,
        4,
        budget or BufferBudget(MIB),
        fresh=True,
        create_whole=_whole([] if created is None else created),
    )


SINGLE_PUT_LIMIT = single_put_limit(BLOCK, 4)


def test_the_single_put_limit_is_what_a_resume_downloads_twice_and_never_over_64_mib() -> None:
    assert single_put_limit(4 * MIB, 4) == 20 * MIB  # the defaults: the 5 blocks in flight a resume loses
    assert single_put_limit(MIB, 4) == 5 * MIB
    assert single_put_limit(16 * MIB, 8) == 64 * MIB


@pytest.mark.parametrize(
    ("blocks", "streamed"),
    [(1.5, True), (SINGLE_PUT_LIMIT / BLOCK, True), (SINGLE_PUT_LIMIT / BLOCK + 1 / BLOCK, False)],
)
async def test_a_file_over_one_block_and_within_the_single_put_limit_is_one_streamed_put_blob(
    blocks: float, streamed: bool
) -> None:
    data = _content(int(blocks * BLOCK))
    source = _Source(data)
    store = _Streaming(source=source)
    created: list[tuple[int, str | None]] = []
    budget = BufferBudget(32 * MIB)
    result = await _fresh_copy(source, store, budget, created=created)
    assert result.size == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.content_md5 == hashlib.md5(data, usedforsecurity=False).digest()
    if streamed:
        assert (store.puts, store.staged, result.created_whole) == (1, {}, True)
        assert store.blobs["m.mp4"] == data
        assert created == [(len(data), None)]  # its headers precede its body: no sha256 to name in them
        # streamed: the sink had the first piece long before the source had served the file
        assert store.served_at_first_piece is not None and store.served_at_first_piece <= 2 * HASH_BATCH
    else:
        assert (store.puts, created, result.created_whole) == (0, [], None)
        assert sum(store.staged.values()) == len(data)
    assert budget.held == 0


@pytest.mark.parametrize("block_md5", [False, True])
async def test_staged_blocks_carry_an_md5_only_where_the_store_asks_and_the_commit_the_whole_file_s(
    block_md5: bool,
) -> None:
    data = _content(SINGLE_PUT_LIMIT + 3 * BLOCK + 5)
    store = _Streaming(block_md5=block_md5)
    result = await _fresh_copy(_Source(data), store)
    if block_md5:
        # Blocks are uploaded several at a time: they may arrive in any order, each with its own digest.
        expected = {
            hashlib.md5(data[i : i + BLOCK], usedforsecurity=False).digest() for i in range(0, len(data), BLOCK)
        }
        assert set(store.block_md5s) == expected and len(store.block_md5s) == len(result.block_ids)
    else:
        assert store.block_md5s == [None] * len(result.block_ids)
    whole = hashlib.md5(data, usedforsecurity=False).digest()
    assert result.content_md5 == whole and result.sha256 == hashlib.sha256(data).hexdigest()
    assert await commit_blocks(store, "m.mp4", result, "video/mp4", {}, {}) is True  # type: ignore[arg-type]
    assert store.commits == [("m.mp4", whole)]


async def test_a_resumed_copy_commits_without_a_whole_blob_md5_it_never_saw_whole() -> None:
    data = _content(SINGLE_PUT_LIMIT + 3 * BLOCK)
    store = _Streaming()
    store.staged = {f"blk-{BLOCK:010d}-{i:08d}": BLOCK for i in range(2)}
    result = await copy_to_blocks(_Source(data), store, "u", "m.mp4", BLOCK, 4, BufferBudget(MIB))  # type: ignore[arg-type]
    assert result.resumed_from == 2 * BLOCK and result.content_md5 is None and result.sha256 is None
    await commit_blocks(store, "m.mp4", result, "video/mp4", {}, {})  # type: ignore[arg-type]
    assert store.commits == [("m.mp4", None)]


async def test_a_streamed_put_blob_that_breaks_off_is_sent_again_from_byte_zero() -> None:
    """Nothing of a failed Put Blob is kept: the next try downloads the file from its start (no Range)."""
    data = _content(3 * BLOCK)
    source = _Source(data, break_at=BLOCK + PIECE)
    store = _Streaming(source=source)
    budget = BufferBudget(32 * MIB)
    result = await _fresh_copy(source, store, budget)
    assert source.opened_at == [0, 0] and store.puts == 2 and store.blobs["m.mp4"] == data
    assert result.sha256 == hashlib.sha256(data).hexdigest() and budget.held == 0


@pytest.mark.parametrize(("status", "retried"), [(503, True), (None, True), (403, False)])
async def test_a_storage_failure_of_the_streamed_put_is_retried_only_when_transient(
    status: int | None, retried: bool
) -> None:
    data = _content(3 * BLOCK)
    source = _Source(data)
    store = _Streaming(source=source)
    store.fail_puts = [StorageError(f"create m.mp4: {status}", status)]
    budget = BufferBudget(32 * MIB)

    async def copy() -> object:
        return await _fresh_copy(source, store, budget)

    if retried:
        await copy()
        assert source.opened_at == [0, 0] and store.blobs["m.mp4"] == data
    else:
        with pytest.raises(StorageError, match="403"):
            await copy()
        assert source.opened_at == [0]
    assert budget.held == 0


async def test_a_streamed_put_blob_whose_stored_md5_differs_from_ours_is_never_proved() -> None:
    data = _content(3 * BLOCK)
    store = _Streaming()
    store.corrupt = True
    with pytest.raises(ArchiveIntegrityError, match="MD5"):
        await _fresh_copy(_Source(data), store)


async def test_a_streamed_put_holds_little_of_the_process_budget_and_never_more_unhashed() -> None:
    """The transfer must stream: while its Put Blob runs it holds STREAM_HOLD of the budget (at most a block), and
    the pieces it keeps for hashing stay within that."""
    data = _content(SINGLE_PUT_LIMIT)
    budget = BufferBudget(32 * MIB)
    held: list[int] = []
    pending: list[int] = []
    original = transfer_module._InOrderHashing.add

    async def add(self: transfer_module._InOrderHashing, pieces: list[bytes], size: int) -> None:
        await original(self, pieces, size)
        held.append(budget.held)
        pending.append(self._pending)

    transfer_module._InOrderHashing.add = add  # type: ignore[method-assign]
    try:
        await _fresh_copy(_Source(data), _Streaming(), budget)
    finally:
        transfer_module._InOrderHashing.add = original  # type: ignore[method-assign]
    assert held and set(held) == {min(BLOCK, STREAM_HOLD)}
    assert max(pending) <= min(BLOCK, STREAM_HOLD) // 2  # and a batch gathering: within what it holds
    assert budget.held == 0


# --- what a reset connection, a cancelled sub-task and a retry after progress do -------------------------------


class _ResettingSink(_Streaming):
    """A Put Blob sent as aiohttp sends one: the body is written by a task of its own. A reset connection cancels
    that task (the CancelledError lands in the body's generator) and the request fails with the SDK's
    connection error, translated at the edge: a StorageError with no status."""

    def __init__(self, resets: int, source: _Source | None = None) -> None:
        super().__init__(source=source)
        self.resets = resets

    async def put_media_stream(
        self,
        name: str,
        body: AsyncIterable[bytes],
        size: int,
        content_type: str,
        metadata: dict[str, str],
        tags: dict[str, str],
    ) -> bytes | None:
        if not self.resets:
            return await super().put_media_stream(name, body, size, content_type, metadata, tags)
        self.resets -= 1
        self.puts += 1
        sent = asyncio.Event()

        async def write_body() -> None:
            got = 0
            async for piece in body:
                got += len(piece)
                if got > size // 2:
                    sent.set()
                    await asyncio.sleep(3600)  # the socket stops taking bytes: the connection is about to reset

        writer = asyncio.create_task(write_body())
        await sent.wait()
        writer.cancel()  # what aiohttp does to the body's writer when the connection is lost
        await asyncio.gather(writer, return_exceptions=True)
        raise StorageError(f"create {name}: ServiceRequestError: Connection reset by peer")


async def test_a_reset_that_cancels_the_streamed_put_s_body_is_the_sink_s_failure_and_the_file_is_sent_again() -> None:
    """The CancelledError thrown into the body is not the download's failure: the Put Blob failed, and the whole
    file is downloaded and sent again in the same transfer."""
    data = _content(3 * BLOCK)
    source = _Source(data)
    store = _ResettingSink(resets=1, source=source)
    budget = BufferBudget(32 * MIB)
    result = await _fresh_copy(source, store, budget)
    assert source.opened_at == [0, 0] and store.puts == 2 and store.blobs["m.mp4"] == data
    assert result.sha256 == hashlib.sha256(data).hexdigest() and budget.held == 0


async def test_a_streamed_put_that_keeps_resetting_fails_as_the_sink_s_transient_error_never_a_cancellation() -> None:
    data = _content(3 * BLOCK)
    source = _Source(data)
    budget = BufferBudget(32 * MIB)
    with pytest.raises(StorageTransientError, match=r"the Put Blob of m\.mp4 broke off") as raised:
        await _fresh_copy(source, _ResettingSink(resets=100, source=source), budget)
    assert "Connection reset" in str(raised.value) and budget.held == 0
    assert source.opened_at == [0, 0, 0], "sent again up to the retry budget's tries"


class _CancelledUnderneath(_Blocks):
    """A staged block whose upload awaits a task something else cancelled: a CancelledError in a task nobody asked
    to end."""

    async def stage_block(self, name: str, block_id: str, data: bytes | memoryview, md5: bytes | None = None) -> None:
        inner = asyncio.create_task(asyncio.sleep(3600))
        asyncio.get_running_loop().call_soon(inner.cancel)
        await inner


async def test_a_sub_task_cancelled_under_a_staged_block_ends_the_transfer_as_an_ordinary_failure() -> None:
    budget = BufferBudget(32 * MIB)
    with pytest.raises(InterruptedOperationError, match=r"stage block blk-.* of m\.mp4 was interrupted"):
        await copy_to_blocks(_Source(_content(8 * BLOCK)), _CancelledUnderneath(), "u", "m.mp4", BLOCK, 2, budget)  # type: ignore[arg-type]
    assert budget.held == 0


class _Flaky(_Source):
    """ACS on a bad day: each try ends after the next of ``cut_after`` bytes from where it started (a reset, a
    clean close), or with nothing at all (0: a 503 before any byte)."""

    def __init__(self, data: bytes, cut_after: list[int], waits: list[float]) -> None:
        super().__init__(data)
        self.cut_after = cut_after

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        self.retry = RetryPolicy(attempts=6, initial_wait=1.0, max_wait=60.0, budget_seconds=600, sleep=sleep)

    @asynccontextmanager
    async def open_media(self, url: str, offset: int = 0) -> AsyncIterator[_Stream]:
        self.opened_at.append(offset)
        cut = self.cut_after.pop(0) if self.cut_after else None
        if cut == 0:
            raise AcsTransientError("503 from ACS", 503)
        self.break_at = None if cut is None else offset + cut
        yield _Stream(offset, self.data, self)


async def test_a_download_that_keeps_moving_is_retried_without_long_waits_and_one_that_does_not_backs_off() -> None:
    data = _content(40 * BLOCK)
    waits: list[float] = []
    # Breaks after part of a block (nothing kept, bytes arrived), after several blocks, and a close mid-way:
    # seven failures, every one after bytes arrived.
    source = _Flaky(data, [BLOCK // 2, 3 * BLOCK + 100, BLOCK // 3, 5 * BLOCK + 7, BLOCK // 2, 2 * BLOCK, 9], waits)
    result = await copy_to_blocks(source, _Blocks(), "u", "m.mp4", BLOCK, 4, BufferBudget(32 * MIB))  # type: ignore[arg-type]
    assert result.size == len(data) and len(waits) == 7
    assert max(waits) < 2.0, f"a download that moved waited {max(waits):.1f} s"

    still: list[float] = []
    dead = _Flaky(data, [0, 0, 0, 0, 0, 0], still)
    with pytest.raises(AcsTransientError, match="503"):
        await copy_to_blocks(dead, _Blocks(), "u", "m.mp4", BLOCK, 4, BufferBudget(32 * MIB))  # type: ignore[arg-type]
    assert len(still) == 5 and [int(w) for w in still] == [1, 2, 4, 8, 16], "nothing moved: the backoff grows"


async def test_bytes_that_arrive_but_are_never_kept_still_end_within_the_streak_s_tries() -> None:
    """A connection that breaks before every block is whole moves nothing forward for good: the waits stay short,
    but the tries count, and the transfer gives up at the budget."""
    waits: list[float] = []
    source = _Flaky(_content(40 * BLOCK), [BLOCK // 2] * 100, waits)
    with pytest.raises(AcsTransientError, match="broke off"):
        await copy_to_blocks(source, _Blocks(), "u", "m.mp4", BLOCK, 4, BufferBudget(32 * MIB))  # type: ignore[arg-type]
    assert len(source.opened_at) == 6 and max(waits) < 2.0
