"""Nothing but an Exception leaves an invocation, unless the process is shutting down or the invocation itself is
cancelled (app.boundary): a CancelledError let out of a function gets no answer from Microsoft's runtime, and the
host waits for it until functionTimeout, then restarts the worker and every invocation in it fails."""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace

import pytest

from devtools.worker_channel import InProcessWorker, InvocationError, TraceParent, queue_trigger_metadata
from recording_pipeline.app.boundary import contained, interrupted
from recording_pipeline.app.worker import handle_chunk_message
from recording_pipeline.core.errors import InterruptedOperationError
from recording_pipeline.core.jobs import encode_job
from recording_pipeline.core.state import ChunkState
from recording_pipeline.functions_adapter import RuntimeHolder
from tests.support.world import World, job
from tests.unit.conftest import Loader


async def _cancelled_underneath() -> None:
    """Await a task that something else cancelled: a CancelledError although nobody cancelled us."""
    inner = asyncio.create_task(asyncio.sleep(3600))
    asyncio.get_running_loop().call_soon(inner.cancel)
    await inner


class _Odd(BaseException):
    """A library's BaseException that is neither a cancellation nor a shutdown."""


async def test_a_stray_cancellation_or_another_base_exception_becomes_an_ordinary_failure() -> None:
    with (
        pytest.raises(InterruptedOperationError, match="the copy was interrupted: CancelledError") as raised,
        contained("the copy"),
    ):
        await _cancelled_underneath()
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)
    with pytest.raises(InterruptedOperationError, match="_Odd"), contained("the copy"):
        raise _Odd
    with pytest.raises(InterruptedOperationError), contained("the copy"):
        raise BaseExceptionGroup("several", [asyncio.CancelledError()])


@pytest.mark.parametrize("shutdown", [KeyboardInterrupt, SystemExit])
def test_the_process_s_own_shutdown_goes_through(shutdown: type[BaseException]) -> None:
    with pytest.raises(shutdown), contained("the copy"):
        raise shutdown
    assert interrupted(BaseExceptionGroup("x", [shutdown(), asyncio.CancelledError()]), "the copy") is None


async def test_the_cancellation_of_the_invocation_itself_goes_through() -> None:
    started = asyncio.Event()

    async def invocation() -> None:
        with contained("the copy"):
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(invocation())
    await started.wait()
    task.cancel()  # the worker stopping: the invocation must end, cancelled
    with pytest.raises(asyncio.CancelledError):
        await task


def _stray_cancellation_in_the_archive(world: World) -> None:
    async def create(*args: object, **kwargs: object) -> bool:
        await _cancelled_underneath()
        return True

    world.archive.create = create  # type: ignore[method-assign]


async def test_a_stray_cancellation_in_an_attempt_is_the_attempt_s_failure_retried_or_quarantined(world: World) -> None:
    world.add()
    _stray_cancellation_in_the_archive(world)
    with pytest.raises(InterruptedOperationError, match="the attempt was interrupted"):
        await handle_chunk_message(encode_job(job()), 1, world.worker)  # raising: the host delivers it again
    # On the last delivery the app decides for itself (requeue or quarantine), and returns.
    assert await handle_chunk_message(encode_job(job()), 4, world.worker) is None
    assert world.manifest().chunks["00000"].state in (ChunkState.PENDING, ChunkState.FAILED)


async def test_no_cancellation_leaves_archive_recording_chunk_under_the_runtime(load: Loader) -> None:
    """Through Microsoft's runtime (azure_functions_runtime, as the proxy worker calls it): the invocation is
    answered as a failure, at once, instead of never."""
    worker: InProcessWorker = await load()
    world = World()
    world.add()
    _stray_cancellation_in_the_archive(world)
    holder = sys.modules["function_app"].runtime
    assert isinstance(holder, RuntimeHolder)
    holder._runtime = SimpleNamespace(worker=world.worker)  # type: ignore[assignment]
    [function] = [f for f in worker.functions if f.name == "archive_recording_chunk"]
    text = encode_job(job())
    metadata = queue_trigger_metadata("m-1", 1, "pop", None, None, None, text)
    try:
        with pytest.raises(InvocationError, match="InterruptedOperationError"):
            await asyncio.wait_for(worker.invoke_queue(function, text, metadata, TraceParent.new()), 30)
    finally:
        holder._runtime = None
