"""The streaming copy engine on its own: failures, and the process-wide buffer budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from recording_pipeline.app.transfer import BufferBudget, copy_to_blocks
from recording_pipeline.core.errors import AcsTransientError
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
