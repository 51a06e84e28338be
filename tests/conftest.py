"""Shared fixtures: real Azurite (one per session, free loopback ports), a real
recording simulator per test, unique queue/container names per test, and a
``serve`` subprocess when a test needs the whole local host."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import Azurite, ServeProcess
from devtools.simulator import RecordingSimulator
from devtools.write_once import Guard, check_log
from recording_pipeline.runtime import Runtime
from tests.support.stack import ARCHIVE_PREFIX, DEADLETTER_PREFIX, Stack
from tests.support.telemetry import Captured, install_capture


@pytest.fixture(scope="session", autouse=True)
def _cli_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The operator commands' log file (cli/logs.py) goes to the session's temporary folder, not the home's."""
    state = tmp_path_factory.mktemp("state")
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(state)
    yield state
    if before is None:
        del os.environ["XDG_STATE_HOME"]
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(scope="session")
def write_once() -> Guard:
    """The archive containers' rule, checked over every request Azurite answered in the session (see azurite); the
    dead-letter containers keep it too: the app only creates its records beside what Event Grid wrote."""
    return Guard(is_archive=lambda container: container.startswith((ARCHIVE_PREFIX, DEADLETTER_PREFIX)))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory, write_once: Guard) -> Iterator[Azurite]:
    instance = Azurite(location=tmp_path_factory.mktemp("azurite"), access_log=True).start()
    yield instance
    instance.stop(grace=1)  # its data is thrown away
    assert instance.log_path is not None
    check_log(instance.log_path, write_once)
    _REPORTS.append(write_once.report())
    assert not write_once.violations, write_once.report()


_REPORTS: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The write-once guard's verdict, in the summary of every run that started Azurite."""
    for report in _REPORTS:
        terminalreporter.write_line(report)


@pytest.fixture
async def simulator() -> AsyncIterator[RecordingSimulator]:
    sim = RecordingSimulator()
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def runtime(stack: Stack) -> AsyncIterator[Runtime]:
    """The app's clients on this test's stack, as a worker process builds them."""
    rt = await stack.runtime()
    yield rt
    await rt.close()


@pytest.fixture
def stack(azurite: Azurite, simulator: RecordingSimulator) -> Stack:
    suffix = uuid.uuid4().hex[:12]
    container, queue = f"{ARCHIVE_PREFIX}{suffix}", f"chunks-{suffix}"
    env = {
        "ACS_CONNECTION_STRING": simulator.connection_string,
        "ARCHIVE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "ARCHIVE_CONTAINER": container,
        "ARCHIVE_STATE_CONTAINER": f"state-{suffix}",
        "DEADLETTER_CONTAINER": f"{DEADLETTER_PREFIX}{suffix}",
        "CHUNK_QUEUE_NAME": queue,
        "RECORDING_ALLOWED_HOSTS": "127.0.0.1",
        "RECORDING_ALLOW_HTTP": "true",
        "WEBHOOK_KEY": secrets.token_urlsafe(16),
        "QUEUE_REQUEUE_DELAY_SECONDS": "1",
        "TRANSFER_BLOCK_SIZE_MIB": "4",
        "ACS_RETRY_ATTEMPTS": "6",
        "ACS_RETRY_INITIAL_WAIT_SECONDS": "0.05",
        "ACS_RETRY_MAX_WAIT_SECONDS": "0.5",
        "ACS_RETRY_BUDGET_SECONDS": "20",
        # host.json as written, but a failed attempt is retried after 1 s instead of 30 s, and an idle queue is
        # polled at least every 0.2 s: the host's own app-setting overrides, so the tests wait less.
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.2",
    }
    return Stack(azurite, simulator, env, container, queue)


@pytest.fixture
async def blob_service(azurite: Azurite) -> AsyncIterator[BlobServiceClient]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    async with service:
        yield service


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServeProcess] = []

    def make(env: dict[str, str]) -> ServeProcess:
        proc = ServeProcess(env, tmp_path / f"serve-{len(started)}.log").start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def _telemetry_pipeline() -> Captured:
    return install_capture()


@pytest.fixture
def telemetry(_telemetry_pipeline: Captured) -> Iterator[Captured]:
    """What the worker's OpenTelemetry pipeline exports during this test (in memory)."""
    _telemetry_pipeline.start()
    yield _telemetry_pipeline
    _telemetry_pipeline.stop()
