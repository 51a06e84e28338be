"""A cheap guard that the transfer streams: archiving a chunk must not cost memory in proportion to its size.

The worker runs in a subprocess of its own (the simulator and Azurite stay out of its memory). It measures its
resident set right before the job, after its imports and ``Runtime.start``, then resets the kernel's high-water
mark (``/proc/self/clear_refs``), archives one 64 MiB chunk through ``handle_chunk_message``, and reports how far
the high-water mark rose. Twice: staged, with 2 MiB blocks and 2 uploads in flight, the transfer's own buffers
bounded by ``(concurrency + 2) × block = 8 MiB``; and as one streamed Put Blob (16 MiB blocks × 3 make the chunk
fit the single-put limit, 64 MiB), which holds far less than a block. An upload can cost up to twice its block
(aiohttp on some Python versions copies what it sends). The bound is twice the staged buffer bound plus 8 MiB for
everything else, 24 MiB: well clear of what a streaming copy uses (about 10 MiB), and far below what any copy
that holds the file (64 MiB, more with copies) would need.

Also checks the process-wide buffer budget the transfers share (no I/O).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from typing import Any

import pytest

from recording_pipeline.app.transfer import BufferBudget, single_put_limit
from recording_pipeline.core.events import parse_recording_event, read_envelope, split_body
from recording_pipeline.core.jobs import encode_job, plan_jobs
from tests.support.stack import REPO, Stack

MIB = 1024 * 1024
CHUNK = 64 * MIB
BLOCK_MIB, CONCURRENCY = 2, 2
BUFFER_BOUND = (CONCURRENCY + 2) * BLOCK_MIB * MIB
GROWTH_BOUND = 2 * BUFFER_BOUND + 8 * MIB  # 24 MiB
CALL = "eeeeeeee-0000-0000-0000-000000000000"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the resident set")
@pytest.mark.parametrize(
    ("size", "block_mib", "concurrency", "how"),
    [
        (CHUNK + 12345, BLOCK_MIB, CONCURRENCY, "staged"),
        (CHUNK, 16, 3, "one streamed Put Blob"),  # single_put_limit(16 MiB, 3) = 64 MiB
    ],
)
async def test_archiving_a_64_mib_chunk_costs_far_less_than_64_mib(
    stack: Stack, size: int, block_mib: int, concurrency: int, how: str
) -> None:
    assert (size <= single_put_limit(block_mib * MIB, concurrency)) is (how != "staged")
    sim = stack.simulator
    chunk = sim.add(f"0-eus-memguard-{block_mib:04d}", size, "mp4", chunk_index=0, call_id=CALL)
    settings = stack.settings()
    raw_events, schema = split_body(json.dumps([sim.event(CALL, "recMemGuard", [chunk])]).encode(), None)
    policy = settings.url_policy
    event = parse_recording_event(read_envelope(raw_events[0], schema))
    (job,) = plan_jobs(event, settings.acs.credentials.endpoint, settings.webhook.retention_hours, policy)

    env = {
        **os.environ,
        **stack.env,
        "TRANSFER_BLOCK_SIZE_MIB": str(block_mib),
        "TRANSFER_CONCURRENCY": str(concurrency),
    }
    # The simulator serves from this test's event loop, so the child is awaited, never waited for.
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.e2e.test_memory_guard",
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(encode_job(job).encode()), timeout=180)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise
    assert child.returncode == 0, err.decode(errors="replace")[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])

    assert report["outcome"] == "archived"
    assert report["sha256"] == chunk.sha256 and report["size"] == chunk.size
    assert report["single_put"] is (how != "staged")
    growth = report["growth"]
    print(
        f"\nworker RSS {report['baseline'] / MIB:.1f} MiB before the job, peak growth {growth / MIB:.1f} MiB "
        f"for a {chunk.size / MIB:.0f} MiB chunk, {how} (bound {GROWTH_BOUND / MIB:.0f} MiB, {report['how']})"
    )
    assert growth < GROWTH_BOUND, (
        f"archiving a {chunk.size / MIB:.0f} MiB chunk ({how}) raised the worker's resident set by "
        f"{growth / MIB:.1f} MiB; it should stay under {GROWTH_BOUND / MIB:.0f} MiB. "
        "Is something holding the whole file?"
    )


async def test_the_process_budget_is_never_exceeded_and_open_downloads_come_first() -> None:
    budget = BufferBudget(4)
    first, second = budget.ticket(), budget.ticket()
    await budget.acquire(3)
    order: list[str] = []

    async def take(name: str, opening: int | None) -> None:
        await budget.acquire(3, opening)
        order.append(name)
        assert budget.held <= budget.capacity

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    # Two transfers wait to open their downloads (the later-started one asked first), then an open one asks.
    tasks = [asyncio.create_task(take("second opens", second))]
    await settle()
    tasks.append(asyncio.create_task(take("first opens", first)))
    await settle()
    tasks.append(asyncio.create_task(take("open download", None)))
    await settle()
    assert order == [] and budget.held == 3
    for _ in range(3):
        budget.release(3)  # room for one at a time
        await settle()
        assert budget.held == 3
    await asyncio.gather(*tasks)
    assert order == ["open download", "first opens", "second opens"]

    # A waiter that gives up leaves nothing behind; a request larger than the budget still runs, alone.
    stuck = asyncio.create_task(budget.acquire(3))
    await settle()
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    budget.release(3)
    assert budget.held == 0
    await asyncio.wait_for(budget.acquire(10, first), timeout=1)
    assert budget.held == 10
    budget.release(10)


# --- the child: one worker process, one job -----------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _high_water() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_high_water() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident set
    except OSError:
        return False
    return True


class _Sampler(threading.Thread):
    """Fallback when the high-water mark cannot be reset: the resident set every millisecond."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)


async def _archive_one(text: str) -> dict[str, Any]:
    from recording_pipeline.app.worker import handle_chunk_message
    from recording_pipeline.core.settings import Settings
    from recording_pipeline.runtime import Runtime

    runtime = await Runtime.start(Settings.from_env())
    try:
        gc.collect()
        sampler = _Sampler()
        sampler.start()
        baseline = _rss()
        reset = _reset_high_water()
        outcome = await handle_chunk_message(text, 1, runtime.worker)
        sampler.done.set()
        sampler.join()
        peak = max(_high_water(), sampler.peak) if reset else sampler.peak
        names = [n async for n in runtime.archive.list_names(f"{CALL}/")]
        custody = next((n for n in names if n.endswith(".custody.json")), None)
        record = await runtime.archive.read_bytes(custody) if custody else None
        proof = json.loads(record[0]) if record else {}
        info = await runtime.archive.info(proof["mediaBlob"]) if proof else None
        return {
            "outcome": str(outcome),
            "baseline": baseline,
            "growth": peak - baseline,
            "how": "VmHWM reset" if reset else "sampled",
            "sha256": proof.get("sha256"),  # a streamed Put Blob has its sha256 in the custody record only
            "size": info.size if info else None,
            "single_put": bool(info and info.metadata.get("single_put") == "true"),
        }
    finally:
        await runtime.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_archive_one(sys.stdin.read()))))
