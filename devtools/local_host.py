"""A local Azure Functions host: runs function_app.py under host.json's rules, on Azurite.

Functions Core Tools cannot be installed where this project is developed, so
this module plays the host, following its source where this app depends on it.
Each rule and where it comes from (azure-sdk-for-net
``sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/Queues/``,
``QueueListener.cs`` and ``QueueProcessor.cs``; azure-functions-host; the
Functions docs):

- **Configuration**: host.json with ``AzureFunctionsJobHost__`` app settings
  over it (``recording_pipeline.core.host_rules``, the same parser the app uses).
- **Functions**: whatever function_app.py declares when a worker imports it
  (``functions_worker``). An import that raises leaves no functions: HTTP
  answers 404 and no queue is read.
- **Receive**: up to ``batchSize`` messages, invisible for 10 minutes
  (``QueueListener``: ``_visibilityTimeout``), renewed every half of that while
  the function runs (``CreateUpdateMessageVisibilityTimer``). The next batch is
  fetched once no more than ``newBatchThreshold`` are in flight
  (``WaitForNewBatchThreshold``); an empty queue is polled again after a
  randomized exponential backoff from 100 ms up to ``maxPollingInterval``.
- **Decode**: ``messageEncoding: base64``; a body that is not base64 goes to
  ``<queue>-poison`` at once, unseen by the function (``QueueServiceClientProvider``'s
  ``MessageDecodingFailed`` handler).
- **Before running**: a message whose dequeue count is above
  ``maxDequeueCount`` is copied to ``<queue>-poison`` and deleted without
  running the function (``QueueProcessor.BeginProcessingMessageAsync``).
- **After running**: success deletes the message. A failure with dequeue
  count ``>= maxDequeueCount`` copies the body, as it is, to ``<queue>-poison``
  (visible at once, the service's default time-to-live of 7 days) and deletes
  it; an earlier failure makes it visible again after ``visibilityTimeout``
  (``CompleteProcessingMessageAsync``, ``ReleaseMessageAsync``).
- **functionTimeout**: the invocation fails, and the worker process is killed
  and started again; every other invocation running in it fails too
  (``WebScriptHostExceptionHandler.OnTimeoutExceptionAsync``,
  ``RestartWorkerWithInvocationIdAsync``; azure-functions-host#10936).
- **A worker process that dies** fails every invocation running in it
  (``GrpcWorkerChannel.TryFailExecutions``); a new one is started.
- **An instance that dies** (this whole process killed) completes nothing: its
  messages come back when their invisibility lapses, with a higher dequeue count.
- **HTTP**: ``/{routePrefix}/{route}`` for the declared methods; FUNCTION auth
  takes the key in ``x-functions-key`` or ``?code=``.
- **Timer trigger**: each function runs at the next moment its NCRONTAB
  schedule names (``ncrontab``), never overlapping itself, and once at start
  with ``runOnStartup``; ``run_timer`` runs one now, as the host's admin API
  ``POST /admin/functions/{name}`` does. No schedule monitor: a schedule missed
  while the host was down is not made up (the real host's ``useMonitor``).
- **Trace context**: every invocation gets its own W3C ``traceparent`` (the
  host's invocation activity), sent to the worker with it, as the host fills
  ``InvocationRequest.trace_context`` (``GrpcWorkerChannel.SendInvocationRequest``);
  the worker makes it the parent of the app's spans.

Where it differs from the real host (also in the README): one instance, no
scale controller; function keys are one key given here (``WEBHOOK_KEY``);
identity-based connections are not supported (Azurite takes connection
strings); the 10-minute invisibility can be shortened (``lease_seconds``) so
tests need not wait for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import random
import secrets
import signal
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from devtools.functions_worker import (
    FunctionInfo,
    HttpCall,
    HttpResult,
    InvocationError,
    LoadedApp,
    TraceParent,
    environment,
)
from devtools.ncrontab import Schedule
from recording_pipeline.core.host_rules import HostRules, read_host_rules
from recording_pipeline.functions_adapter import RuntimeHolder

log = logging.getLogger("devtools.local_host")

RECEIVE_VISIBILITY_SECONDS = 600.0  # QueueListener: messages in flight stay invisible this long, renewed at half
MIN_POLLING_INTERVAL = 0.1
POISON_SUFFIX = "-poison"
DEVTOOLS_HOME = Path(__file__).resolve().parent.parent  # where the worker imports devtools from


class WorkerDied(Exception):
    """The worker process ended while the invocation ran."""


class WorkerChannel(Protocol):
    functions: list[FunctionInfo]
    index_error: str | None

    async def start(self) -> None: ...
    async def invoke_http(self, name: str, call: HttpCall, trace: TraceParent) -> HttpResult: ...
    async def invoke_queue(
        self, name: str, body: str | bytes, metadata: dict[str, Any], trace: TraceParent
    ) -> None: ...
    async def invoke_timer(self, name: str, past_due: bool, trace: TraceParent) -> None: ...
    async def kill(self) -> None: ...


class InProcessWorker:
    """function_app.py imported into this process (fast; a "kill" cancels its invocations instead)."""

    def __init__(self, app_root: Path, env: Mapping[str, str]) -> None:
        self.app_root, self.env = app_root, dict(env)
        self.functions: list[FunctionInfo] = []
        self.index_error: str | None = None
        self.app: LoadedApp | None = None
        self._running: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        try:
            with environment(self.env):
                self.app = LoadedApp(self.app_root)
            self.functions = self.app.describe()
        except Exception as exc:
            self.index_error = f"{type(exc).__name__}: {exc}"

    async def invoke_http(self, name: str, call: HttpCall, trace: TraceParent) -> HttpResult:
        assert self.app is not None
        result: HttpResult = await self._run(self.app.invoke_http(name, call, trace))
        return result

    async def invoke_queue(self, name: str, body: str | bytes, metadata: dict[str, Any], trace: TraceParent) -> None:
        assert self.app is not None
        await self._run(self.app.invoke_queue(name, body, metadata, trace))

    async def invoke_timer(self, name: str, past_due: bool, trace: TraceParent) -> None:
        assert self.app is not None
        await self._run(self.app.invoke_timer(name, past_due, trace))

    async def _run(self, work: Any) -> Any:
        task = asyncio.ensure_future(work)
        self._running.add(task)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise WorkerDied("the worker was stopped") from None
            raise
        finally:
            self._running.discard(task)

    async def kill(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        # A process that ends closes its sockets; one that goes on must close the app's clients itself.
        holder = getattr(self.app.module, "runtime", None) if self.app is not None else None
        if isinstance(holder, RuntimeHolder):
            await holder.close()


class SubprocessWorker:
    """function_app.py in a child process, as the Functions host runs its Python worker: killable."""

    def __init__(self, app_root: Path, env: Mapping[str, str]) -> None:
        self.app_root, self.env = app_root, dict(env)
        self.functions: list[FunctionInfo] = []
        self.index_error: str | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._url = ""

    async def start(self) -> None:
        env = {**self.env, "PYTHONPATH": f"{self.app_root}:{DEVTOOLS_HOME}"}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devtools.functions_worker",
            "--app-root",
            str(self.app_root),
            cwd=self.app_root,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # the worker's logs go where the host's go
            preexec_fn=_die_with_parent,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=60)
        if not line:
            raise RuntimeError("the language worker exited before it was ready")
        hello = json.loads(line)
        self.functions = [FunctionInfo(**{**f, "methods": tuple(f["methods"])}) for f in hello["functions"]]
        self.index_error = hello["error"]
        self._url = f"http://127.0.0.1:{hello['port']}/invoke"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def invoke_http(self, name: str, call: HttpCall, trace: TraceParent) -> HttpResult:
        answer = await self._invoke(
            {
                "kind": "http",
                "function": name,
                "traceparent": trace.traceparent,
                "method": call.method,
                "url": call.url,
                "headers": call.headers,
                "params": call.params,
                "body": base64.b64encode(call.body).decode(),
            }
        )
        return HttpResult(answer["status"], answer["headers"], base64.b64decode(answer["body"]))

    async def invoke_queue(self, name: str, body: str | bytes, metadata: dict[str, Any], trace: TraceParent) -> None:
        text = isinstance(body, str)
        payload = body if isinstance(body, str) else base64.b64encode(body).decode()
        await self._invoke(
            {
                "kind": "queue",
                "function": name,
                "traceparent": trace.traceparent,
                "body": payload,
                "text": text,
                "metadata": metadata,
            }
        )

    async def invoke_timer(self, name: str, past_due: bool, trace: TraceParent) -> None:
        await self._invoke({"kind": "timer", "function": name, "traceparent": trace.traceparent, "past_due": past_due})

    async def _invoke(self, call: dict[str, Any]) -> dict[str, Any]:
        assert self._session is not None
        try:
            async with self._session.post(self._url, json=call) as response:
                answer: dict[str, Any] = await response.json()
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise WorkerDied(f"the language worker process ended: {type(exc).__name__}") from None
        if not answer.get("ok"):
            raise InvocationError(str(answer.get("error")))
        return answer

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        if self._session is not None:
            await self._session.close()


@dataclass
class HostStats:
    """What the host did, for tests and the log."""

    worker_starts: int = 0
    timeouts: int = 0
    invocations: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    poisoned_by_host: int = 0
    traces: dict[str, list[TraceParent]] = field(default_factory=dict)  # the trace context sent, per function

    def invocation(self, name: str) -> TraceParent:
        """Count an invocation of ``name`` and give it its own trace context (sampled)."""
        self.invocations[name] = self.invocations.get(name, 0) + 1
        trace = TraceParent(f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01")
        self.traces.setdefault(name, []).append(trace)
        return trace


class LocalFunctionsHost:
    def __init__(
        self,
        app_root: Path,
        env: Mapping[str, str],
        worker_factory: Callable[[Path, Mapping[str, str]], WorkerChannel] = SubprocessWorker,
        function_key: str | None = None,
        lease_seconds: float = RECEIVE_VISIBILITY_SECONDS,
    ) -> None:
        self.app_root = app_root.resolve()
        self.env = dict(env)
        self.rules: HostRules = read_host_rules(self.app_root, self.env)
        self.function_key = function_key
        self.lease_seconds = lease_seconds
        self.stats = HostStats()
        self._factory = worker_factory
        self.worker: WorkerChannel | None = None
        self._restarting: asyncio.Lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._listeners: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._start_worker()
        for info in self.functions(kind="queueTrigger"):
            self._listeners.append(asyncio.create_task(self._listen(info), name=f"listen-{info.name}"))
        for info in self.functions(kind="timerTrigger"):
            schedule = Schedule.parse(info.schedule or "")
            self._listeners.append(asyncio.create_task(self._tick(info, schedule), name=f"timer-{info.name}"))

    async def stop(self) -> None:
        """Stop taking messages, let the running invocations finish, stop the worker."""
        self._stop.set()
        await asyncio.gather(*self._listeners, return_exceptions=True)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self.worker is not None:
            await self.worker.kill()

    def functions(self, kind: str | None = None) -> list[FunctionInfo]:
        found = self.worker.functions if self.worker is not None else []
        return [f for f in found if kind is None or f.trigger == kind]

    async def _start_worker(self) -> None:
        worker = self._factory(self.app_root, self.env)
        await worker.start()
        self.worker = worker
        self.stats.worker_starts += 1
        if worker.index_error:
            log.error("Worker failed to index functions: %s", worker.index_error.strip().splitlines()[-1])
        log.info("functions: %s", ", ".join(f"{f.name} ({f.trigger})" for f in worker.functions) or "none")

    async def restart_worker(self, reason: str, dead: WorkerChannel) -> None:
        """Kill the worker (every invocation in it fails) and start another, once per dead worker."""
        async with self._restarting:
            if self.worker is not dead:
                return
            log.error("restarting the worker process: %s", reason)
            await dead.kill()
            await self._start_worker()

    # --- queue trigger ---------------------------------------------------------------------------

    async def _listen(self, info: FunctionInfo) -> None:
        queue = self._queue_client(info, self._resolve(info.queue_name or ""))
        poison = self._queue_client(info, self._resolve(info.queue_name or "") + POISON_SUFFIX)
        rules = self.rules.queues
        delay = MIN_POLLING_INTERVAL
        async with queue, poison:
            while not self._stop.is_set():
                try:
                    batch = [
                        m
                        async for m in queue.receive_messages(
                            messages_per_page=rules.batch_size,
                            max_messages=rules.batch_size,
                            visibility_timeout=int(self.lease_seconds),
                        )
                    ]
                except ResourceNotFoundError:  # the app creates it on first use; the listener waits, as the host's
                    batch = []
                except Exception as exc:
                    log.warning("could not read queue %s: %s", queue.queue_name, type(exc).__name__)
                    batch = []
                if not batch:
                    delay = min(delay * 2, rules.max_polling_interval)
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay * random.uniform(0.8, 1.2))
                    continue
                delay = MIN_POLLING_INTERVAL
                for message in batch:
                    task = asyncio.create_task(self._process(info, queue, poison, message))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                while len(self._in_flight) > rules.new_batch_threshold and not self._stop.is_set():
                    await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    async def _process(
        self, info: FunctionInfo, queue: QueueClient, poison: QueueClient, message: QueueMessage
    ) -> None:
        rules = self.rules.queues
        raw = str(message.content)
        try:
            body = base64.b64decode(raw, validate=True) if rules.message_encoding == "base64" else raw.encode()
        except (binascii.Error, ValueError):
            log.warning("message %s is not valid base64: moved to %s unseen", message.id, poison.queue_name)
            await self._poison(queue, poison, message, raw)
            return
        count = int(message.dequeue_count or 1)
        if count > rules.max_dequeue_count:
            log.warning("message %s has reached maxDequeueCount of %d", message.id, rules.max_dequeue_count)
            await self._poison(queue, poison, message, raw)
            return
        keeper = asyncio.create_task(self._keep_invisible(queue, message))
        try:
            ok = await self._invoke_queue(info, message, body, count)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if ok is None:  # the whole host is stopping mid-invocation: leave the message to its lease
            return
        try:
            if ok:
                await queue.delete_message(message)
            elif count >= rules.max_dequeue_count:
                log.warning("message %s has reached maxDequeueCount of %d", message.id, rules.max_dequeue_count)
                await self._poison(queue, poison, message, raw)
            else:
                await queue.update_message(message, visibility_timeout=int(rules.visibility_timeout))
        except Exception as exc:  # the lease lapses and the message comes back; as in the host
            log.warning("could not complete message %s: %s", message.id, type(exc).__name__)

    async def _invoke_queue(self, info: FunctionInfo, message: QueueMessage, body: bytes, count: int) -> bool | None:
        """True: succeeded; False: failed (raised, timed out, or the worker died)."""
        worker = self.worker
        assert worker is not None
        trace = self.stats.invocation(info.name)
        try:
            text: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body
        metadata = {
            "Id": message.id,
            "DequeueCount": count,
            "InsertionTime": _iso(message.inserted_on),
            "ExpirationTime": _iso(message.expires_on),
            "NextVisibleTime": _iso(message.next_visible_on),
            "PopReceipt": message.pop_receipt,
        }
        try:
            await asyncio.wait_for(worker.invoke_queue(info.name, text, metadata, trace), self.rules.function_timeout)
            return True
        except TimeoutError:
            self.stats.timeouts += 1
            log.error("Timeout value of %.0f s exceeded by function %s", self.rules.function_timeout or 0, info.name)
            await self.restart_worker(f"function timeout in {info.name}", worker)
        except InvocationError as exc:
            log.info("invocation of %s failed: %s", info.name, exc)
        except WorkerDied as exc:
            if self._stop.is_set() and self.worker is worker:
                return None
            log.error("invocation of %s failed: %s", info.name, exc)
            await self.restart_worker("the worker process ended", worker)
        self.stats.failures += 1
        return False

    async def _keep_invisible(self, queue: QueueClient, message: QueueMessage) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 2)
            with suppress(Exception):
                updated = await queue.update_message(message, visibility_timeout=int(self.lease_seconds))
                message.pop_receipt = updated.pop_receipt

    async def _poison(self, queue: QueueClient, poison: QueueClient, message: QueueMessage, raw: str) -> None:
        """The body as it was (encoded as the queue encodes it), default time-to-live; then the original goes."""
        with suppress(Exception):
            await poison.create_queue()
        await poison.send_message(raw)
        await queue.delete_message(message)
        self.stats.poisoned_by_host += 1

    def _queue_client(self, info: FunctionInfo, name: str) -> QueueClient:
        connection = self.env.get(info.connection or "AzureWebJobsStorage")
        if not connection:
            raise RuntimeError(f"{info.name}: set {info.connection or 'AzureWebJobsStorage'} to a connection string")
        return QueueClient.from_connection_string(connection, name)

    def _resolve(self, name: str) -> str:
        """``%SETTING%`` names an app setting, as binding expressions do."""
        if name.startswith("%") and name.endswith("%"):
            return self.env[name.strip("%")]
        return name

    # --- timer trigger ---------------------------------------------------------------------------

    async def _tick(self, info: FunctionInfo, schedule: Schedule) -> None:
        if info.run_on_startup:
            await self.run_timer(info.name)
        while not self._stop.is_set():
            now = datetime.now(UTC)
            wait = (schedule.next_after(now) - now).total_seconds()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
                return
            await self.run_timer(info.name)

    async def run_timer(self, name: str, past_due: bool = False) -> bool:
        """Invoke a timer function now; True if it succeeded (a failure is logged, as the host logs it)."""
        worker = self.worker
        assert worker is not None
        trace = self.stats.invocation(name)
        try:
            await asyncio.wait_for(worker.invoke_timer(name, past_due, trace), self.rules.function_timeout)
            return True
        except TimeoutError:
            self.stats.timeouts += 1
            await self.restart_worker(f"function timeout in {name}", worker)
        except (InvocationError, WorkerDied) as exc:
            log.error("invocation of %s failed: %s", name, exc)
        self.stats.failures += 1
        return False

    # --- HTTP trigger ----------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._http)
        return app

    async def _http(self, request: web.Request) -> web.StreamResponse:
        prefix = f"/{self.rules.route_prefix}/" if self.rules.route_prefix else "/"
        route = request.path[len(prefix) :] if request.path.startswith(prefix) else None
        info = next((f for f in self.functions("httpTrigger") if f.route == route), None)
        if info is None:
            return web.Response(status=404)
        if request.method.upper() not in info.methods:
            return web.Response(status=405)
        if info.auth_level != "anonymous":
            supplied = request.headers.get("x-functions-key") or request.query.get("code") or ""
            if not self.function_key or not hmac.compare_digest(supplied.encode(), self.function_key.encode()):
                return web.Response(status=401)
        worker = self.worker
        assert worker is not None
        call = HttpCall(
            request.method, str(request.url), dict(request.headers), dict(request.query), await request.read()
        )
        trace = self.stats.invocation(info.name)
        try:
            result = await asyncio.wait_for(worker.invoke_http(info.name, call, trace), self.rules.function_timeout)
        except TimeoutError:
            await self.restart_worker(f"function timeout in {info.name}", worker)
            return web.Response(status=500)
        except (InvocationError, WorkerDied) as exc:
            log.error("invocation of %s failed: %s", info.name, exc)
            return web.Response(status=500)
        return web.Response(status=result.status, headers=result.headers, body=result.body)


def _die_with_parent() -> None:
    """Linux: the worker is killed when the host dies, as a worker dies with its instance."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


async def serve(
    app_root: Path, env: Mapping[str, str], host: str, port: int, function_key: str, lease_seconds: float
) -> None:
    """Run function_app.py under the local host until SIGINT/SIGTERM."""
    functions_host = LocalFunctionsHost(app_root, env, SubprocessWorker, function_key, lease_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await functions_host.start()
    runner = web.AppRunner(functions_host.web_app(), access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("local Functions host on http://%s:%d/%s/", host, port, functions_host.rules.route_prefix)
        await stop.wait()
    finally:
        await runner.cleanup()
        await functions_host.stop()
