"""What the tests share besides fixtures: the stack a test runs on, the local host on it, and small helpers."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from devtools.devstack import Azurite
from devtools.local_host import RECEIVE_VISIBILITY_SECONDS, LocalFunctionsHost
from devtools.loopback import serve_app
from devtools.simulator import RecordingSimulator
from devtools.worker_channel import InProcessWorker, SubprocessWorker
from recording_pipeline.app.webhook import WebhookRequest, handle_delivery
from recording_pipeline.core.host_rules import read_host_rules
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.naming import manifest_name
from recording_pipeline.core.settings import Settings
from recording_pipeline.edges.retry import RetryPolicy
from recording_pipeline.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
ARCHIVE_PREFIX = "rec-"  # the archive containers of the tests: the write-once guard watches them
DEADLETTER_PREFIX = "dl-"  # the dead-letter containers: what Event Grid wrote is never changed either (guarded too)
FIXTURES = REPO / "tests" / "fixtures"


@dataclass
class Stack:
    """Everything one test needs: env for a pipeline process, clients to inspect the result."""

    azurite: Azurite
    simulator: RecordingSimulator
    env: dict[str, str]
    container: str
    queue: str

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env({**self.env, **overrides})

    @property
    def state_container(self) -> str:
        return self.env["ARCHIVE_STATE_CONTAINER"]

    async def manifest(self, call_id: str, rec_key: str) -> dict[str, Any] | None:
        """A recording's manifest, from the state container; None if there is none."""
        service = BlobServiceClient.from_connection_string(self.azurite.connection_string)
        async with service:
            blob = service.get_container_client(self.state_container).get_blob_client(manifest_name(call_id, rec_key))
            try:
                doc: dict[str, Any] = json.loads(await (await blob.download_blob()).readall())
            except ResourceNotFoundError:
                return None
            return doc

    async def runtime(self, retry: RetryPolicy | None = None, **overrides: str) -> Runtime:
        """The app's clients in this process, built as function_app.py builds them (host.json's rules included)."""
        env = {**self.env, **overrides}
        return await Runtime.start(Settings.from_env(env), read_host_rules(REPO, env), retry=retry)

    async def local_host(self, in_process: bool = True, **overrides: str) -> LocalHost:
        """function_app.py under the local Functions host, on this stack, serving HTTP on a free port."""
        return await self.start_host(overrides, in_process)

    async def start_host(
        self,
        overrides: Mapping[str, str],
        in_process: bool = True,
        sampled: Callable[[str], bool] | None = None,
        lease_seconds: float = RECEIVE_VISIBILITY_SECONDS,
    ) -> LocalHost:
        """``local_host``, and ``sampled``: the sampled flag of each invocation's traceparent, by function;
        ``lease_seconds``: how long a message in flight stays hidden (the host's 10 minutes)."""
        env = {**os.environ, **self.env, **overrides}
        factory = InProcessWorker if in_process else SubprocessWorker
        host = LocalFunctionsHost(
            REPO,
            env,
            factory,
            function_key=self.env["WEBHOOK_KEY"],
            lease_seconds=lease_seconds,
            sampled=sampled or (lambda name: True),
            scheduled=False,  # the tests run timers themselves (run_timer), never on the clock
        )
        await host.start()
        runner, port = await serve_app(host.web_app())
        return LocalHost(host, runner, f"http://127.0.0.1:{port}/api/recording-events")

    def raw_queue(self, poison: bool = False) -> QueueClient:
        """The chunk queue (or its poison queue) as the Functions host reads it: base64 text."""
        return QueueClient.from_connection_string(
            self.azurite.connection_string,
            f"{self.queue}-poison" if poison else self.queue,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    async def peek(self, poison: bool = False) -> list[Any]:
        """Up to 32 messages of the chunk queue (or its poison queue), left where they are; none if it is absent."""
        async with self.raw_queue(poison) as client:
            try:
                return list(await client.peek_messages(max_messages=32))
            except ResourceNotFoundError:
                return []

    async def receive(self, count: int = 1) -> list[Any]:
        """Take up to ``count`` messages off the chunk queue, as a worker would (hidden for 30 s)."""
        async with self.raw_queue() as client:
            return [m async for m in client.receive_messages(max_messages=count, visibility_timeout=30)]

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


async def deliver(
    runtime: Runtime,
    body: Any,
    content_type: str = "application/json",
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """A delivery handed to the webhook's handler in this process, as function_app.py hands it over."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await handle_delivery(
        WebhookRequest(method, {"Content-Type": content_type, **(headers or {})}, raw),
        runtime.webhook,
        runtime.queue,
        runtime.audit,
    )
    return response.status, response.body, response.headers


async def post_events(
    url: str, events: Any, key: str | None, content_type: str = "application/json", raw: bytes | None = None
) -> tuple[int, Any]:
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

    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
