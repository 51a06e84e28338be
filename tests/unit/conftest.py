"""The unit tests' in-memory world (every edge a fake, one per test), and function_app.py under the runtime."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from devtools.worker_channel import InProcessWorker
from tests.support.stack import REPO
from tests.support.world import World


@pytest.fixture
def world() -> World:
    return World()


Loader = Callable[..., Awaitable[InProcessWorker]]


@pytest.fixture
async def load() -> AsyncIterator[Loader]:
    """function_app.py indexed afresh by azure_functions_runtime, as a new worker process indexes it."""
    started: list[InProcessWorker] = []

    async def start(**env: str) -> InProcessWorker:
        worker = InProcessWorker(REPO, {**os.environ, **GOOD_SETTINGS, **env})
        await worker.start()
        assert worker.index_error is None, worker.index_error
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await worker.kill()


GOOD_SETTINGS = {
    "ACS_CONNECTION_STRING": "endpoint=https://acs.communication.azure.com/;accesskey=YWJjZA==",
    "ARCHIVE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}
