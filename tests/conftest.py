"""Shared fixtures: real Azurite (one per session, free loopback ports), a real
recording simulator per test, unique queue/container names per test, and a
``serve`` subprocess when a test needs the whole local host."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from devtools.local_host import InProcessWorker, LocalFunctionsHost, SubprocessWorker
from recording_pipeline.devstack import Azurite, ServeProcess
from recording_pipeline.host_rules import read_host_rules
from recording_pipeline.jobs import RecordingChunk, decode_job
from recording_pipeline.retry import RetryPolicy
from recording_pipeline.runtime import Runtime
from recording_pipeline.settings import Settings
from recording_pipeline.simulator import RecordingSimulator

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    instance = Azurite(location=tmp_path_factory.mktemp("azurite")).start()
    yield instance
    instance.stop(grace=1)  # its data is thrown away


@pytest.fixture
async def simulator() -> AsyncIterator[RecordingSimulator]:
    sim = RecordingSimulator()
    await sim.start()
    yield sim
    await sim.stop()


@dataclass
class Stack:
    """Everything one test needs: env for a pipeline process, clients to inspect the result."""

    azurite: Azurite
    simulator: RecordingSimulator
    env: dict[str, str]
    container: str
    queue: str
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env({**self.env, **overrides})

    async def runtime(self, retry: RetryPolicy | None = None, **overrides: str) -> Runtime:
        """The app's clients in this process, built as function_app.py builds them (host.json's rules included)."""
        env = {**self.env, **overrides}
        return await Runtime.start(Settings.from_env(env), read_host_rules(REPO, env), retry=retry)

    async def local_host(self, in_process: bool = True, **overrides: str) -> LocalHost:
        """function_app.py under the local Functions host, on this stack, serving HTTP on a free port."""
        env = {**os.environ, **self.env, **overrides}
        factory = InProcessWorker if in_process else SubprocessWorker
        host = LocalFunctionsHost(REPO, env, factory, function_key=self.env["WEBHOOK_KEY"])
        await host.start()
        runner = web.AppRunner(host.web_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return LocalHost(host, runner, f"http://127.0.0.1:{port}/api/recording-events")

    def container_client(self, service: BlobServiceClient) -> ContainerClient:
        return service.get_container_client(self.container)

    async def queued_jobs(self) -> list[RecordingChunk]:
        """The jobs on the chunk queue, read raw and decoded the way the Functions host decodes them."""
        client = QueueClient.from_connection_string(
            self.azurite.connection_string, self.queue, message_decode_policy=TextBase64DecodePolicy()
        )
        async with client:
            try:
                return [decode_job(str(m.content)) for m in await client.peek_messages(max_messages=32)]
            except ResourceNotFoundError:  # nothing was ever enqueued: the app creates the queue on first use
                return []


@dataclass
class LocalHost:
    host: LocalFunctionsHost
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.host.stop()


@pytest.fixture
def stack(azurite: Azurite, simulator: RecordingSimulator) -> Stack:
    suffix = uuid.uuid4().hex[:12]
    container, queue = f"rec-{suffix}", f"chunks-{suffix}"
    env = {
        "ACS_CONNECTION_STRING": simulator.connection_string,
        "ARCHIVE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "ARCHIVE_CONTAINER": container,
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


async def post_events(
    url: str, events: Any, key: str | None, content_type: str = "application/json", raw: bytes | None = None
) -> tuple[int, Any]:
    import json

    headers = {"Content-Type": content_type}
    if key is not None:
        headers["x-functions-key"] = key
    body = raw if raw is not None else json.dumps(events).encode()
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text) if text else None
        except ValueError:
            return response.status, text


async def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Await ``predicate()`` until it returns something truthy."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
