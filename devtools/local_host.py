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
import logging
import random
import signal
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from devtools.ncrontab import Schedule
from devtools.worker_channel import (
    FunctionInfo,
    HttpCall,
    InvocationError,
    SubprocessWorker,
    TraceParent,
    WorkerChannel,
    WorkerDied,
    queue_trigger_metadata,
)
from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.host_rules import HostRules, read_host_rules

log = logging.getLogger("devtools.local_host")

RECEIVE_VISIBILITY_SECONDS = 600.0  # QueueListener: messages in flight stay invisible this long, renewed at half
MIN_POLLING_INTERVAL = 0.1
POISON_SUFFIX = "-poison"


@dataclass
class HostStats:
    """What the host did, for tests and the log."""

    worker_starts: int = 0
    timeouts: int = 0
    invocations: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    poisoned_by_host: int = 0
    recreated: int = 0
    traces: dict[str, list[TraceParent]] = field(default_factory=dict)  # the trace context sent, per function

    def invocation(self, name: str, sampled: bool = True) -> TraceParent:
        """Count an invocation of ``name`` and give it its own trace context."""
        self.invocations[name] = self.invocations.get(name, 0) + 1
        trace = TraceParent.new(sampled)
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
        sampled: Callable[[str], bool] = lambda name: True,
        scheduled: bool = True,
    ) -> None:
        """``scheduled`` False: timer functions run only when ``run_timer`` calls them (the tests drive them so,
        and a scheduled run cannot land in a test that counts requests)."""
        self.scheduled = scheduled
        self.app_root = app_root.resolve()
        self.env = dict(env)
        self.rules: HostRules = read_host_rules(self.app_root, self.env)
        self.function_key = function_key
        self.lease_seconds = lease_seconds
        self.stats = HostStats()
        self._factory = worker_factory
        self._sampled = sampled  # the sampled flag of each invocation's traceparent (the host's own sampling)
        self.worker: WorkerChannel | None = None
        self.config_errors: list[str] = []
        self._restarting: asyncio.Lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._listeners: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._abandoned: set[int] = set()  # workers ended by a site update: their messages are left to their lease

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._start_worker()
        self._start_triggers()

    def _start_triggers(self) -> None:
        self.config_errors = []
        for info in self.functions(kind="queueTrigger"):
            problem = self._queue_problem(info)
            if problem:  # the host's "function is in error" at indexing: that function does not run
                self.config_errors.append(problem)
                log.error("The '%s' function is in error: %s", info.name, problem)
                continue
            self._listeners.append(asyncio.create_task(self._listen(info), name=f"listen-{info.name}"))
        for info in self.functions(kind="timerTrigger") if self.scheduled else []:
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

    async def update_site(self, **settings: str) -> None:
        """An app-setting change or a deploy under Flex's "Recreate" site update strategy.

        Every running execution is ended and the instance starts again with the new settings (Functions docs,
        "Site update strategies in Flex Consumption"). As when an instance ends, the messages in flight are not
        completed: they come back when their invisibility lapses, with a higher dequeue count.
        """
        log.warning("site update: ending every running execution and starting again with new settings")
        self.stats.recreated += 1
        old = self.worker
        async with self._restarting:
            self._stop.set()
            listeners, self._listeners = self._listeners, []
            await asyncio.gather(*listeners, return_exceptions=True)
            if old is not None:
                self._abandoned.add(id(old))
                await old.kill()
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            self.env.update(settings)
            self.rules = read_host_rules(self.app_root, self.env)
            self._stop = asyncio.Event()
            await self._start_worker()
        self._start_triggers()

    def functions(self, kind: str | None = None) -> list[FunctionInfo]:
        found = self.worker.functions if self.worker is not None else []
        return [f for f in found if kind is None or f.trigger == kind]

    def readiness(self) -> tuple[bool, str]:
        """Ready once the worker indexed function_app.py and loaded every function it declared."""
        worker = self.worker
        if worker is None or self._restarting.locked():
            return False, "the language worker is starting"
        if worker.index_error:
            return False, f"the worker failed to index the app: {worker.index_error.strip().splitlines()[-1]}"
        if self.config_errors:
            return False, "; ".join(self.config_errors)
        if not worker.functions:
            return False, "function_app.py declares no functions"
        return True, f"{len(worker.functions)} functions loaded"

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
        trace = self.stats.invocation(info.name, self._sampled(info.name))
        try:
            text: str | bytes = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body
        metadata = queue_trigger_metadata(
            str(message.id),
            count,
            message.pop_receipt,
            message.inserted_on,
            message.expires_on,
            message.next_visible_on,
            text if isinstance(text, str) else base64.b64encode(body).decode(),
        )
        try:
            await asyncio.wait_for(worker.invoke_queue(info, text, metadata, trace), self.rules.function_timeout)
            return True
        except TimeoutError:
            self.stats.timeouts += 1
            log.error("Timeout value of %.0f s exceeded by function %s", self.rules.function_timeout or 0, info.name)
            await self.restart_worker(f"function timeout in {info.name}", worker)
        except InvocationError as exc:
            log.info("invocation of %s failed: %s", info.name, exc)
        except WorkerDied as exc:
            if id(worker) in self._abandoned or (self._stop.is_set() and self.worker is worker):
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

    def _queue_problem(self, info: FunctionInfo) -> str | None:
        """What keeps a queue trigger from listening: its connection or its queue name's setting missing."""
        setting = info.connection or "AzureWebJobsStorage"
        if not self.env.get(setting):
            return f"{info.name}: the connection setting {setting} is missing (a connection string here)"
        name = info.queue_name or ""
        if name.startswith("%") and name.endswith("%") and not self.env.get(name.strip("%")):
            return f"{info.name}: the app setting {name.strip('%')} named by the queue name {name} is missing"
        return None

    def _queue_client(self, info: FunctionInfo, name: str) -> QueueClient:
        return QueueClient.from_connection_string(self.env[info.connection or "AzureWebJobsStorage"], name)

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
        [info] = [f for f in worker.functions if f.name == name]
        trace = self.stats.invocation(name, self._sampled(name))
        try:
            await asyncio.wait_for(worker.invoke_timer(info, past_due, trace), self.rules.function_timeout)
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
        app.router.add_get("/runtime/health", self._health)
        app.router.add_get("/runtime/health/live", self._live)
        app.router.add_get("/runtime/health/ready", self._ready)
        app.router.add_route("*", "/{path:.*}", self._http)
        return app

    # --- the host's health probes (azure-functions-host PR 11341): /runtime/health runs every check,
    # /live the web host's, /ready the script host's (functions indexed and loaded) ---------------------

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "Healthy", "checks": {"webhost": "Healthy"}})

    async def _ready(self, request: web.Request) -> web.Response:
        ready, reason = self.readiness()
        status = "Healthy" if ready else "Unhealthy"
        return web.json_response(
            {"status": status, "reason": reason, "checks": {"scripthost": status}}, status=200 if ready else 503
        )

    async def _health(self, request: web.Request) -> web.Response:
        ready, reason = self.readiness()
        status = "Healthy" if ready else "Unhealthy"
        checks = {"webhost": "Healthy", "scripthost": status}
        return web.json_response({"status": status, "reason": reason, "checks": checks}, status=200 if ready else 503)

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
        trace = self.stats.invocation(info.name, self._sampled(info.name))
        try:
            result = await asyncio.wait_for(worker.invoke_http(info, call, trace), self.rules.function_timeout)
        except TimeoutError:
            await self.restart_worker(f"function timeout in {info.name}", worker)
            return web.Response(status=500)
        except (InvocationError, WorkerDied) as exc:
            log.error("invocation of %s failed: %s", info.name, exc)
            return web.Response(status=500)
        return web.Response(status=result.status, headers=result.headers, body=result.body)


@dataclass(frozen=True)
class LocalHostSettings:
    """The local host's own settings: the function key it demands, and how long a message in flight stays hidden."""

    function_key: str = field(repr=False)
    lease_seconds: float = RECEIVE_VISIBILITY_SECONDS
    telemetry_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LocalHostSettings:
        key = (env.get("WEBHOOK_KEY") or "").strip()
        if not key:
            raise ConfigurationError("the local host needs WEBHOOK_KEY, the function key the webhook demands")
        raw = (env.get("LOCAL_HOST_LEASE_SECONDS") or "").strip() or str(RECEIVE_VISIBILITY_SECONDS)
        try:
            lease = float(raw)
        except ValueError:
            raise ConfigurationError(f"LOCAL_HOST_LEASE_SECONDS must be a number of seconds, not {raw!r}") from None
        if not 1 <= lease <= 3600:
            raise ConfigurationError(f"LOCAL_HOST_LEASE_SECONDS must be between 1 and 3600, not {raw}")
        telemetry = (env.get("LOCAL_TELEMETRY_FILE") or "").strip()
        return cls(key, lease, Path(telemetry) if telemetry else None)


async def serve(app_root: Path, env: Mapping[str, str], host: str, port: int) -> None:
    """Run function_app.py under the local host until SIGINT/SIGTERM.

    With ``LOCAL_TELEMETRY_FILE``, a loopback Application Insights (``ingestion``) takes what the worker's Azure
    Monitor distro exports and writes it there as JSON lines; the app settings decide, as in Azure, whether the
    worker exports (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``).
    """
    from devtools.ingestion import LoopbackIngestion

    local = LocalHostSettings.from_env(env)
    environment = dict(env)
    ingestion = None
    if local.telemetry_file is not None:
        ingestion = await LoopbackIngestion(local.telemetry_file).start()
        environment.update(ingestion.environment())
    functions_host = LocalFunctionsHost(
        app_root, environment, SubprocessWorker, local.function_key, local.lease_seconds
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(functions_host.web_app(), access_log=None)
    try:
        # Listening first, as the host does: /runtime/health/live answers at once, /ready once the app is loaded.
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        await functions_host.start()
        log.info("local Functions host on http://%s:%d/%s/", host, port, functions_host.rules.route_prefix)
        await stop.wait()
    finally:
        await runner.cleanup()
        await functions_host.stop()
        if ingestion is not None:
            await ingestion.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os

    from recording_pipeline.edges.telemetry import configure_json_logging

    parser = argparse.ArgumentParser(
        prog="python -m devtools.local_host",
        description="run function_app.py under a local Functions host with host.json's rules (needs WEBHOOK_KEY)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--app-root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    configure_json_logging()
    try:
        asyncio.run(serve(args.app_root.resolve(), dict(os.environ), args.host, args.port))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
