"""The local Functions host itself: does it apply host.json the way the Functions host does?

A toy app (written to a temporary folder) records every invocation; the host's
rules are checked against Azurite: deliveries and poisoning, the dequeue count
above maxDequeueCount, a body that is not base64, batchSize and
newBatchThreshold, functionTimeout restarting the worker, and an app that fails
to import.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.metadata
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from devtools.devstack import Azurite
from devtools.local_host import LocalFunctionsHost
from devtools.loopback import serve_app
from devtools.worker_channel import InProcessWorker, SubprocessWorker
from tests.support.stack import REPO, wait_until

TOY_APP = """
import asyncio, json, os, pathlib
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
if os.environ.get("TOY_FAIL_IMPORT"):
    raise RuntimeError("this app cannot start")
LOG = pathlib.Path(os.environ["TOY_LOG"])  # read at import, like function_app.py's settings


def note(msg, event):
    with LOG.open("a") as log:
        line = {"body": msg.get_body().decode(), "count": msg.dequeue_count, "event": event, "pid": os.getpid()}
        log.write(json.dumps(line) + "\\n")


@app.queue_trigger(arg_name="msg", queue_name="%TOY_QUEUE%", connection="AzureWebJobsStorage")
async def toy(msg: func.QueueMessage) -> None:
    note(msg, "start")
    body = msg.get_body().decode()
    if body.startswith("sleep:"):
        await asyncio.sleep(float(body.split(":")[1]))
    if body.startswith("fail"):
        raise RuntimeError("told to fail")
    note(msg, "end")


if os.environ.get("TOY_TIMER"):

    @app.timer_trigger(arg_name="timer", schedule=os.environ["TOY_TIMER"], run_on_startup=True)
    async def tick(timer: func.TimerRequest) -> None:
        with LOG.open("a") as log:
            log.write(json.dumps({"event": "tick", "past_due": timer.past_due, "pid": os.getpid()}) + "\\n")


@app.route(route="ping", methods=["GET"])
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")
"""

HOST_JSON = {
    "version": "2.0",
    "functionTimeout": "00:00:02",
    "extensions": {
        "queues": {
            "maxDequeueCount": 3,
            "visibilityTimeout": "00:00:00",
            "batchSize": 2,
            "newBatchThreshold": 1,
            "maxPollingInterval": "00:00:00.2",
        }
    },
}


@dataclass
class Toy:
    root: Path
    env: dict[str, str]
    queue: QueueClient
    poison: QueueClient
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    async def send(self, body: str) -> None:
        await self.queue.send_message(body)

    async def peek(self, client: QueueClient) -> list[Any]:
        try:
            return list(await client.peek_messages(max_messages=32))
        except ResourceNotFoundError:
            return []


@pytest.fixture
async def toy(azurite: Azurite, tmp_path: Path) -> AsyncIterator[Toy]:
    (tmp_path / "function_app.py").write_text(TOY_APP)
    (tmp_path / "host.json").write_text(json.dumps(HOST_JSON))
    name = f"toy-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "AzureWebJobsStorage": azurite.connection_string,
        "TOY_QUEUE": name,
        "TOY_LOG": str(tmp_path / "invocations.jsonl"),
    }
    encode = TextBase64EncodePolicy()
    queue = QueueClient.from_connection_string(azurite.connection_string, name, message_encode_policy=encode)
    poison = QueueClient.from_connection_string(azurite.connection_string, f"{name}-poison")
    await queue.create_queue()
    async with queue, poison:
        yield Toy(tmp_path, env, queue, poison, tmp_path / "invocations.jsonl")


async def _started(toy: Toy, worker: Any = InProcessWorker, **env: str) -> LocalFunctionsHost:
    host = LocalFunctionsHost(toy.root, {**toy.env, **env}, worker)
    await host.start()
    return host


async def test_a_failing_message_is_delivered_max_dequeue_count_times_then_moved_to_poison_bare(toy: Toy) -> None:
    host = await _started(toy)
    try:
        await toy.send("fail-always")
        [poisoned] = await wait_until(lambda: toy.peek(toy.poison), timeout=20)
    finally:
        await host.stop()
    assert [line["count"] for line in toy.lines() if line["event"] == "start"] == [1, 2, 3]
    assert base64.b64decode(poisoned.content) == b"fail-always"  # the body as it was: no error added
    assert poisoned.expires_on.year < 9999, "the host's copy has the queue's default time-to-live"
    assert await toy.peek(toy.queue) == []


async def test_a_message_received_above_max_dequeue_count_is_poisoned_without_running(toy: Toy) -> None:
    await toy.send("never-seen")
    for _ in range(3):  # three deliveries that never completed (as when the process died each time)
        [message] = [m async for m in toy.queue.receive_messages(max_messages=1, visibility_timeout=1)]
        await asyncio.sleep(1.1)
    assert message.dequeue_count == 3
    host = await _started(toy)
    try:
        await wait_until(lambda: toy.peek(toy.poison), timeout=20)
    finally:
        await host.stop()
    assert toy.lines() == []
    assert host.stats.poisoned_by_host == 1


async def test_a_body_that_is_not_base64_is_poisoned_unseen(toy: Toy) -> None:
    raw = QueueClient.from_connection_string(toy.env["AzureWebJobsStorage"], toy.env["TOY_QUEUE"])
    async with raw:
        await raw.send_message("this is not base64!")
    host = await _started(toy)
    try:
        [poisoned] = await wait_until(lambda: toy.peek(toy.poison), timeout=20)
    finally:
        await host.stop()
    assert poisoned.content == "this is not base64!" and toy.lines() == []


async def test_batch_size_plus_new_batch_threshold_messages_run_at_once_at_most(toy: Toy) -> None:
    for i in range(8):  # short and long in turn, so that one of a batch ends while the other runs
        await toy.send(f"sleep:{0.3 if i % 2 else 1.5}:{i}")
    host = await _started(toy, AzureFunctionsJobHost__functionTimeout="00:01:00")
    try:

        async def all_done() -> bool:
            return sum(1 for line in toy.lines() if line["event"] == "end") == 8

        await wait_until(all_done, timeout=30)
    finally:
        await host.stop()
    running = peak = 0
    for line in toy.lines():
        running += 1 if line["event"] == "start" else -1
        peak = max(peak, running)
    assert peak == host.rules.queues.batch_size + host.rules.queues.new_batch_threshold == 3


async def test_function_timeout_restarts_the_worker_process_and_fails_every_invocation_in_it(toy: Toy) -> None:
    host = await _started(toy, SubprocessWorker, AzureFunctionsJobHost__extensions__queues__batchSize="2")
    try:
        await toy.send("sleep:30:stuck")  # exceeds functionTimeout (2 s)
        await toy.send("sleep:3:beside")  # would end in time, but shares the worker process

        async def both_again() -> bool:
            return {(line["body"], line["count"]) for line in toy.lines() if line["event"] == "start"} >= {
                ("sleep:30:stuck", 2),
                ("sleep:3:beside", 2),
            }

        await wait_until(both_again, timeout=30)
    finally:
        await host.stop()
    first = [line for line in toy.lines() if line["count"] == 1]
    assert {line["body"] for line in first} == {"sleep:30:stuck", "sleep:3:beside"}
    assert not [line for line in first if line["event"] == "end"], "the worker was killed under both"
    assert host.stats.timeouts >= 1 and host.stats.worker_starts >= 2
    assert len({line["pid"] for line in toy.lines()}) >= 2, "a new worker process"


async def test_an_app_that_fails_to_import_has_no_functions_and_takes_no_message(toy: Toy) -> None:
    await toy.send("waiting")
    host = await _started(toy, SubprocessWorker, TOY_FAIL_IMPORT="1")
    runner, port = await serve_app(host.web_app())
    try:
        assert host.functions() == []
        url = f"http://127.0.0.1:{port}/api/ping"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 404
        await asyncio.sleep(0.5)
        [waiting] = await toy.peek(toy.queue)
        assert waiting.dequeue_count == 0
    finally:
        await runner.cleanup()
        await host.stop()


async def test_the_http_trigger_answers_on_its_route(toy: Toy) -> None:
    host = await _started(toy)
    runner, port = await serve_app(host.web_app())
    try:
        base = f"http://127.0.0.1:{port}/api"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/ping") as response:
                assert (response.status, await response.text()) == (200, "pong")
            async with session.post(f"{base}/ping") as response:
                assert response.status == 405
            async with session.get(f"{base}/nothing-here") as response:
                assert response.status == 404
    finally:
        await runner.cleanup()
        await host.stop()


@pytest.mark.parametrize("worker", [InProcessWorker, SubprocessWorker])
async def test_a_timer_function_runs_at_start_and_then_on_its_schedule(toy: Toy, worker: Any) -> None:
    host = await _started(toy, worker, TOY_TIMER="* * * * * *")  # every second
    try:
        assert [f.name for f in host.functions("timerTrigger")] == ["tick"]

        async def ticked_thrice() -> bool:
            return len([line for line in toy.lines() if line["event"] == "tick"]) >= 3

        await wait_until(ticked_thrice, timeout=20)
        assert await host.run_timer("tick")  # as the admin API runs it
    finally:
        await host.stop()
    ticks = [line for line in toy.lines() if line["event"] == "tick"]
    assert not any(t["past_due"] for t in ticks)
    assert host.stats.invocations["tick"] == len(ticks)


async def test_a_host_told_not_to_schedule_runs_a_timer_only_when_asked(toy: Toy) -> None:
    host = LocalFunctionsHost(toy.root, {**toy.env, "TOY_TIMER": "* * * * * *"}, InProcessWorker, scheduled=False)
    await host.start()
    try:
        await asyncio.sleep(2.5)  # two scheduled moments, and the start (runOnStartup)
        assert [line for line in toy.lines() if line["event"] == "tick"] == []
        assert await host.run_timer("tick")
    finally:
        await host.stop()
    assert len([line for line in toy.lines() if line["event"] == "tick"]) == 1


@pytest.mark.parametrize("worker", [InProcessWorker, SubprocessWorker])
async def test_microsoft_s_runtime_indexes_and_invokes_the_app_as_pinned(toy: Toy, worker: Any) -> None:
    """The functions are indexed, converted and run by azure_functions_runtime, the version requirements.txt pins."""
    pinned = next(
        line.split("==")[1].strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.startswith("azure-functions-runtime==")
    )
    host = await _started(toy, worker)
    try:
        assert host.worker is not None
        metadata = host.worker.worker_metadata
        # WorkerInitResponse.worker_metadata, as the runtime fills it (utils/helpers.get_worker_metadata).
        assert metadata["worker_version"] == pinned == importlib.metadata.version("azure-functions-runtime")
        assert metadata["runtime_name"] == "python" and metadata["runtime_version"] == "3.13"
        # The capabilities the runtime declares, among them raw HTTP bodies as bytes.
        assert host.worker.capabilities["RawHttpBodyBytes"] == "true"
        assert {f.function_id for f in host.functions()} == {
            str(uuid.uuid5(uuid.NAMESPACE_OID, f.name)) for f in host.functions()
        }, "function ids as the runtime's registry makes them"
        await toy.send("hello")

        async def ran() -> bool:
            return any(line["event"] == "end" for line in toy.lines())

        await wait_until(ran, timeout=20)
    finally:
        await host.stop()


async def test_the_host_s_probes_say_live_at_once_and_ready_once_the_functions_are_loaded(toy: Toy) -> None:
    host = LocalFunctionsHost(toy.root, toy.env, InProcessWorker)
    runner, port = await serve_app(host.web_app())
    base = f"http://127.0.0.1:{port}/runtime/health"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/live") as response:
                assert response.status == 200
            async with session.get(f"{base}/ready") as response:  # listening, the worker not started yet
                assert response.status == 503
                assert "starting" in (await response.json())["reason"]
            await host.start()
            for path in ("", "/live", "/ready"):
                async with session.get(f"{base}{path}") as response:
                    assert response.status == 200, path
                    assert (await response.json())["status"] == "Healthy"
    finally:
        await runner.cleanup()
        await host.stop()


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"TOY_FAIL_IMPORT": "1"}, "this app cannot start"),
        ({"TOY_QUEUE": ""}, "TOY_QUEUE"),
        ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage"),
    ],
)
async def test_not_ready_with_a_configuration_error_and_the_reason(toy: Toy, env: dict[str, str], reason: str) -> None:
    host = await _started(toy, SubprocessWorker, **env)
    runner, port = await serve_app(host.web_app())
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/runtime/health/ready", "/runtime/health"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    answer = await response.json()
                    assert response.status == 503 and answer["status"] == "Unhealthy", path
                    assert reason in answer["reason"]
            async with session.get(f"http://127.0.0.1:{port}/runtime/health/live") as response:
                assert response.status == 200  # the host itself is up: it is the app that cannot run
    finally:
        await runner.cleanup()
        await host.stop()
