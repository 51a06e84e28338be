"""The process-wide Runtime for the Azure Functions adapter.

Functions gives a Python worker process no start-up hook, so the Runtime is
built on first use, inside the worker's event loop, and then reused by every
invocation: one aiohttp session and one set of storage clients per process.
"""

from __future__ import annotations

import asyncio

from .runtime import Runtime
from .settings import Settings


class RuntimeHolder:
    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> Runtime:
        if self._runtime is not None:
            return self._runtime
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._runtime is None:
                self._runtime = await Runtime.start(Settings.from_env())
        return self._runtime
