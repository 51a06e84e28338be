"""The host's side of the language-worker protocol: the messages the Functions host sends, and what it reads back.

The order and content follow azure-functions-host's ``GrpcWorkerChannel``: a
``WorkerInitRequest`` with the app's folder and the host's capabilities; a
``FunctionsMetadataRequest`` (the worker indexes function_app.py and answers with
one ``RpcFunctionMetadata`` per function, its bindings as JSON in ``raw_bindings``);
one ``FunctionLoadRequest`` per function; then an ``InvocationRequest`` per
execution with the trigger's value as ``TypedData`` and the trigger metadata as the
WebJobs extension fills its binding data (``QueueTriggerBindingDataProvider``: the
``Id`` and ``PopReceipt`` strings, ``DequeueCount`` and the three times as JSON;
the HTTP trigger's request with its body as bytes, with the ``RawHttpBodyBytes``
capability the worker declared, and lower-cased header names; the timer's
``TimerInfo`` as JSON), and the host's W3C trace context for the invocation.

A channel is a worker this host talks to: ``InProcessWorker`` (the proxy in this
process: fast, and a "kill" cancels its invocations) or ``SubprocessWorker`` (a
``python -m devtools.functions_worker`` process the host can kill).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from devtools.worker_messages import (
    FunctionLoadRequest,
    FunctionsMetadataRequest,
    InvocationRequest,
    InvocationResponse,
    ParameterBinding,
    RpcFunctionMetadata,
    RpcHttp,
    RpcTraceContext,
    StatusResult,
    StreamingMessage,
    TypedData,
    WorkerInitRequest,
)

HOST_VERSION = "4.1043.0-local"  # what this host says it is in WorkerInitRequest.host_version
DEVTOOLS_HOME = Path(__file__).resolve().parent.parent  # where the worker process imports devtools from
WORKER_START_SECONDS = 60  # Flex: the worker process must start within 60 s


@dataclass(frozen=True)
class FunctionInfo:
    """One function as the host knows it after indexing: from its RpcFunctionMetadata's raw bindings."""

    name: str
    function_id: str
    trigger: str  # httpTrigger | queueTrigger | timerTrigger
    arg_name: str
    route: str | None = None
    methods: tuple[str, ...] = ()
    auth_level: str = "function"
    queue_name: str | None = None  # as declared, %SETTING% unresolved
    connection: str | None = None
    schedule: str | None = None
    run_on_startup: bool = False

    @classmethod
    def from_metadata(cls, metadata: RpcFunctionMetadata) -> FunctionInfo:
        bindings = [json.loads(raw) for raw in metadata.raw_bindings]
        triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            raise ValueError(f"{metadata.name}: {len(triggers)} triggers")
        spec = triggers[0]
        kind, arg = str(spec["type"]), str(spec["name"])
        common = {"name": metadata.name, "function_id": metadata.function_id, "trigger": kind, "arg_name": arg}
        if kind == "httpTrigger":
            methods = tuple(str(m).upper() for m in spec.get("methods") or ("GET", "POST"))
            level = str(spec.get("authLevel") or "function").lower()
            return cls(**common, route=str(spec.get("route") or metadata.name), methods=methods, auth_level=level)
        if kind == "queueTrigger":
            return cls(**common, queue_name=str(spec["queueName"]), connection=spec.get("connection"))
        if kind == "timerTrigger":
            return cls(**common, schedule=str(spec["schedule"]), run_on_startup=bool(spec.get("runOnStartup")))
        raise ValueError(f"{metadata.name}: the local host does not run {kind} functions")


@dataclass(frozen=True)
class HttpCall:
    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class TraceParent:
    """The W3C trace context the host sends with an invocation (InvocationRequest.trace_context)."""

    traceparent: str
    tracestate: str = ""

    @classmethod
    def new(cls, sampled: bool = True) -> TraceParent:
        return cls(f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{'01' if sampled else '00'}")


class InvocationError(Exception):
    """The function raised (the runtime answered Failure): the host treats the invocation as failed."""


class WorkerDied(Exception):
    """The worker process ended while the invocation ran."""


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def queue_trigger_metadata(
    message_id: str,
    dequeue_count: int,
    pop_receipt: str | None,
    inserted: datetime | None,
    expires: datetime | None,
    next_visible: datetime | None,
    body: str,
) -> dict[str, TypedData]:
    """The queue trigger's binding data, typed as the host sends it."""
    metadata = {
        "Id": TypedData(string=message_id),
        "DequeueCount": TypedData(json=json.dumps(dequeue_count)),
        "PopReceipt": TypedData(string=pop_receipt or ""),
        "QueueTrigger": TypedData(string=body),
    }
    for name, value in (("InsertionTime", inserted), ("ExpirationTime", expires), ("NextVisibleTime", next_visible)):
        if value is not None:
            metadata[name] = TypedData(json=json.dumps(_iso(value)))
    return metadata


def _sys_metadata(function: FunctionInfo) -> TypedData:
    now = datetime.now(UTC).isoformat()
    return TypedData(json=json.dumps({"MethodName": function.name, "UtcNow": now, "RandGuid": str(uuid.uuid4())}))


class WorkerChannel:
    """A language worker: started, told the app's folder, asked for the functions, each loaded, then invoked."""

    def __init__(self, app_root: Path, env: Mapping[str, str]) -> None:
        self.app_root, self.env = app_root, dict(env)
        self.functions: list[FunctionInfo] = []
        self.index_error: str | None = None
        self.capabilities: dict[str, str] = {}
        self.worker_metadata: dict[str, Any] = {}

    # --- the transport, per kind of channel ----------------------------------------------------------

    async def _spawn(self) -> None:
        raise NotImplementedError

    async def _exchange(self, message: StreamingMessage) -> StreamingMessage:
        raise NotImplementedError

    async def kill(self) -> None:
        raise NotImplementedError

    # --- the protocol --------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._spawn()
        init = await self._exchange(
            StreamingMessage(
                request_id=uuid.uuid4().hex,
                worker_init_request=WorkerInitRequest(
                    host_version=HOST_VERSION,
                    capabilities={},
                    worker_directory=str(DEVTOOLS_HOME),
                    function_app_directory=str(self.app_root),
                ),
            )
        )
        answer = init.worker_init_response
        self.capabilities = dict(answer.capabilities)
        self.worker_metadata = answer.worker_metadata.to_json()
        if answer.result.status != StatusResult.Success:
            self.index_error = answer.result.exception.message or "the worker's init failed"
            return
        listed = await self._exchange(
            StreamingMessage(
                request_id=uuid.uuid4().hex,
                functions_metadata_request=FunctionsMetadataRequest(function_app_directory=str(self.app_root)),
            )
        )
        found = listed.function_metadata_response
        if found.result.status != StatusResult.Success:
            self.index_error = found.result.exception.message or "indexing failed"
            return
        for metadata in found.function_metadata_results:
            loaded = await self._exchange(
                StreamingMessage(
                    request_id=uuid.uuid4().hex,
                    function_load_request=FunctionLoadRequest(function_id=metadata.function_id, metadata=metadata),
                )
            )
            result = loaded.function_load_response.result
            if result.status != StatusResult.Success:
                self.index_error = f"{metadata.name} did not load: {result.exception.message}"
                continue
            self.functions.append(FunctionInfo.from_metadata(metadata))

    async def invoke_http(self, function: FunctionInfo, call: HttpCall, trace: TraceParent) -> HttpResult:
        request = RpcHttp(
            method=call.method,
            url=call.url,
            headers={k.lower(): v for k, v in call.headers.items()},
            body=TypedData(bytes=call.body),
            params={},
            query=dict(call.query),
        )
        answer = await self._invoke(function, TypedData(http=request), {}, trace)
        http = answer.return_value.http
        body = http.body
        kind = body.WhichOneof("data")
        raw = body.bytes if kind == "bytes" else str(getattr(body, kind) if kind else "").encode()
        return HttpResult(int(http.status_code or 200), dict(http.headers), raw)

    async def invoke_queue(
        self, function: FunctionInfo, body: str | bytes, metadata: dict[str, TypedData], trace: TraceParent
    ) -> None:
        value = TypedData(string=body) if isinstance(body, str) else TypedData(bytes=body)
        await self._invoke(function, value, metadata, trace)

    async def invoke_timer(self, function: FunctionInfo, past_due: bool, trace: TraceParent) -> None:
        """The TimerInfo the host sends (no schedule monitor here, so no ScheduleStatus)."""
        info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due}
        await self._invoke(function, TypedData(json=json.dumps(info)), {}, trace)

    async def _invoke(
        self, function: FunctionInfo, value: TypedData, metadata: dict[str, TypedData], trace: TraceParent
    ) -> InvocationResponse:
        invocation_id = str(uuid.uuid4())
        answer = await self._exchange(
            StreamingMessage(
                request_id=uuid.uuid4().hex,
                invocation_request=InvocationRequest(
                    invocation_id=invocation_id,
                    function_id=function.function_id,
                    input_data=[ParameterBinding(name=function.arg_name, data=value)],
                    trigger_metadata={**metadata, "sys": _sys_metadata(function)},
                    trace_context=RpcTraceContext(
                        trace_parent=trace.traceparent, trace_state=trace.tracestate, attributes={}
                    ),
                ),
            )
        )
        response: InvocationResponse = answer.invocation_response
        if response.result.status != StatusResult.Success:
            raise InvocationError(response.result.exception.message or "the function failed")
        return response


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` as os.environ while the worker indexes the app (function_app.py reads its settings then)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class InProcessWorker(WorkerChannel):
    """The proxy and the runtime in this process: fast; a "kill" cancels the invocations running in it.

    One process has one runtime (its registry and telemetry switches are module state), as one worker process has:
    the Azure Monitor distro cannot be configured here (use SubprocessWorker for telemetry as deployed).
    """

    def __init__(self, app_root: Path, env: Mapping[str, str]) -> None:
        super().__init__(app_root, env)
        if (self.env.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY") or "").lower() == "true":
            raise ValueError("the in-process worker cannot configure Azure Monitor: use SubprocessWorker")
        self._running: set[asyncio.Task[Any]] = set()
        self._proxy: Any = None
        self._killed = False

    async def _spawn(self) -> None:
        from devtools.functions_worker import RuntimeWorker

        self._proxy = RuntimeWorker()

    async def _exchange(self, message: StreamingMessage) -> StreamingMessage:
        if self._killed:
            raise WorkerDied("the worker was stopped")
        if message.WhichOneof("content") == "worker_init_request":
            with environment(self.env):
                return StreamingMessage.from_json(await self._proxy.handle(message.to_json()))
        task = asyncio.ensure_future(self._proxy.handle(message.to_json()))
        self._running.add(task)
        try:
            return StreamingMessage.from_json(await asyncio.shield(task))
        except asyncio.CancelledError:
            if task.cancelled():
                raise WorkerDied("the worker was stopped") from None
            raise
        finally:
            self._running.discard(task)

    async def kill(self) -> None:
        self._killed = True
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        # A process that ends closes its sockets; one that goes on must close the app's clients itself. The app
        # has no hook for it (a worker process only ever ends), so this reaches into the holder it builds once.
        holder = getattr(sys.modules.get("function_app"), "runtime", None)
        built = getattr(holder, "_runtime", None)
        if built is not None:
            await built.close()
            holder._runtime = None  # type: ignore[union-attr]


class SubprocessWorker(WorkerChannel):
    """``python -m devtools.functions_worker`` in a child process, as the Functions host runs its Python worker."""

    def __init__(self, app_root: Path, env: Mapping[str, str]) -> None:
        super().__init__(app_root, env)
        self.process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._url = ""

    async def _spawn(self) -> None:
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
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=WORKER_START_SECONDS)
        if not line:
            raise RuntimeError("the language worker exited before it was ready")
        self._url = f"http://127.0.0.1:{json.loads(line)['port']}/rpc"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def _exchange(self, message: StreamingMessage) -> StreamingMessage:
        assert self._session is not None
        try:
            async with self._session.post(self._url, json=message.to_json()) as response:
                answer: dict[str, Any] = await response.json()
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise WorkerDied(f"the language worker process ended: {type(exc).__name__}") from None
        return StreamingMessage.from_json(answer)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        if self._session is not None:
            await self._session.close()


def _die_with_parent() -> None:
    """Linux: the worker is killed when the host dies, as a worker dies with its instance."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
