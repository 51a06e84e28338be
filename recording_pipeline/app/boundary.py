"""What may leave an invocation: its result, or an Exception. Never another BaseException.

Microsoft's Python runtime wraps an invocation in ``except Exception``
(azure_functions_runtime/handle_event.py, ``invocation_request``), and the 3.13
proxy worker runs each of the host's requests as a task of its own that queues the
response when the handler returns (azure-functions-python-worker,
proxy_worker/dispatcher.py, ``_dispatch_grpc_request``). A function that lets a
CancelledError out ends that task with no InvocationResponse at all: the host
waits for one until functionTimeout, with the queue message held invisible, then
restarts the worker process, and every other invocation running in it fails.

A CancelledError reaches an invocation that nobody asked to end when a task inside
it was cancelled: aiohttp cancels the task writing a request body when the
connection resets. ``contained`` turns such a one, and any other BaseException but
the process's own shutdown, into InterruptedOperationError, an ordinary failure
that names what was interrupted. The cancellation of the invocation's own task
(the worker stopping) goes through, as do KeyboardInterrupt and SystemExit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from recording_pipeline.core.errors import InterruptedOperationError

SHUTDOWN = (KeyboardInterrupt, SystemExit)


def interrupted(exc: BaseException, what: str) -> InterruptedOperationError | None:
    """``exc`` as an ordinary failure of ``what``; None when it must go through as it is (an Exception, the
    process shutting down, or the cancellation of the running task itself)."""
    if isinstance(exc, (Exception, *SHUTDOWN)):
        return None
    if isinstance(exc, BaseExceptionGroup) and exc.subgroup(SHUTDOWN) is not None:
        return None
    task = asyncio.current_task()
    if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
        return None
    return InterruptedOperationError(f"{what} was interrupted: {type(exc).__name__} from a task it did not end")


@contextmanager
def contained(what: str) -> Iterator[None]:
    """Run the block; a BaseException that ``interrupted`` converts leaves it as InterruptedOperationError."""
    try:
        yield
    except BaseException as exc:
        error = interrupted(exc, what)
        if error is None:
            raise
        raise error from exc
