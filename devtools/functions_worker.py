"""The language-worker half of the local Functions host: load function_app.py and invoke its functions.

What the Azure Functions Python worker does for the app, reduced to what this
app uses:
- import ``function_app.py`` from the app's folder and index the one
  ``FunctionApp`` it defines (``app.get_functions()``); an import that raises
  leaves the host with no functions (the worker answers the host's metadata
  request with a failure, azure-functions-python-worker ``dispatcher.py``);
- build the trigger argument with azure.functions' own types: ``HttpRequest``,
  and ``QueueMessage`` through the library's ``QueueMessageInConverter`` from
  the trigger metadata the host sends (``Id``, ``DequeueCount``,
  ``InsertionTime``, ``ExpirationTime``, ``NextVisibleTime``, ``PopReceipt``,
  each a JSON datum, as the host's ``QueueTriggerBinding.CreateBindingData``
  fills them);
- run async functions on the worker's one event loop, each with the trace
  context the host sent for its invocation attached first (``traceparent``), as
  the worker does when its OpenTelemetry is on (``runtimes/v2/azure_functions_runtime/
  handle_event.py``: ``configure_opentelemetry(fi_context)`` before ``execute_async``),
  so the app's spans are children of the host's invocation;
- at start, before function_app.py is imported, configure OpenTelemetry when
  ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` (``worker_telemetry``).

Run as a child process (``python -m devtools.functions_worker``) it serves
invocations on a loopback port, so the host can kill it the way the real host
kills a timed-out worker; ``InProcessWorker`` runs the same code in the host's
own process, for fast tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import inspect
import json
import os
import sys
import traceback
import uuid
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions._abc import TraceContext
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from devtools.loopback import serve_app


@dataclass(frozen=True)
class FunctionInfo:
    """One function as the host sees it after indexing."""

    name: str
    trigger: str  # httpTrigger | queueTrigger
    arg_name: str
    route: str | None = None
    methods: tuple[str, ...] = ()
    auth_level: str = "function"
    queue_name: str | None = None  # as declared, %SETTING% unresolved
    connection: str | None = None
    schedule: str | None = None  # timerTrigger: the NCRONTAB expression
    run_on_startup: bool = False


@dataclass(frozen=True)
class HttpCall:
    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, str]
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


class InvocationError(Exception):
    """The function raised: the host treats the invocation as failed."""


class LoadedApp:
    """function_app.py of one app folder, imported as a fresh module."""

    def __init__(self, app_root: Path) -> None:
        self.module = _import_fresh(app_root / "function_app.py")
        apps = [v for v in vars(self.module).values() if isinstance(v, func.FunctionApp)]
        if len(apps) != 1:
            raise ValueError(f"function_app.py must define exactly one FunctionApp, found {len(apps)}")
        self.functions = {str(f.get_function_name()): f for f in apps[0].get_functions()}

    def describe(self) -> list[FunctionInfo]:
        return [_info(name, fn) for name, fn in self.functions.items()]

    async def invoke_http(self, name: str, call: HttpCall, trace: TraceParent | None = None) -> HttpResult:
        fn = self.functions[name]
        request = func.HttpRequest(
            method=call.method, url=call.url, headers=call.headers, params=call.params, route_params={}, body=call.body
        )
        response = await self._call(fn, request, trace)
        if not isinstance(response, func.HttpResponse):
            raise InvocationError(f"{name} returned {type(response).__name__}, not an HttpResponse")
        headers = dict(response.headers)
        if response.mimetype and "content-type" not in {k.lower() for k in headers}:
            headers["Content-Type"] = response.mimetype
        return HttpResult(response.status_code, headers, response.get_body())

    async def invoke_queue(
        self, name: str, body: str | bytes, metadata: Mapping[str, Any], trace: TraceParent | None = None
    ) -> None:
        fn = self.functions[name]
        datum = meta.Datum(type="string" if isinstance(body, str) else "bytes", value=body)
        trigger_metadata = {key: meta.Datum(type="json", value=json.dumps(value)) for key, value in metadata.items()}
        message = QueueMessageInConverter.decode(datum, trigger_metadata=trigger_metadata)
        await self._call(fn, message, trace)

    async def invoke_timer(self, name: str, past_due: bool, trace: TraceParent | None = None) -> None:
        """The TimerRequest the host sends (``IsPastDue``; no schedule monitor here, so no status)."""
        fn = self.functions[name]
        datum = meta.Datum(type="json", value=json.dumps({"IsPastDue": past_due, "ScheduleStatus": {}, "Schedule": {}}))
        await self._call(fn, TimerRequestConverter.decode(datum, trigger_metadata={}), trace)

    async def _call(self, fn: Any, trigger_value: Any, trace: TraceParent | None = None) -> Any:
        user = fn.get_user_function()
        arg_name = fn.get_trigger().name
        kwargs: dict[str, Any] = {arg_name: trigger_value}
        if "context" in inspect.signature(user).parameters:
            kwargs["context"] = _Context(fn.get_function_name(), trace)
        token = None
        if trace is not None and inspect.iscoroutinefunction(user):
            carrier = {"traceparent": trace.traceparent, "tracestate": trace.tracestate}
            token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
        try:
            result = user(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise InvocationError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if token is not None:
                otel_context.detach(token)
        return result


class _TraceContext(TraceContext):
    def __init__(self, trace: TraceParent | None) -> None:
        self._trace = trace

    @property
    def trace_parent(self) -> str:
        return self._trace.traceparent if self._trace else ""

    @property
    def trace_state(self) -> str:
        return self._trace.tracestate if self._trace else ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _Context(func.Context):
    def __init__(self, function_name: str, trace: TraceParent | None = None) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._trace = _TraceContext(trace)

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> Any:
        return self._trace

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return None


def _info(name: str, fn: Any) -> FunctionInfo:
    trigger = fn.get_trigger()
    spec = trigger.get_dict_repr()
    kind = str(spec.get("type"))
    if kind == "httpTrigger":
        methods = tuple(str(getattr(m, "value", m)).upper() for m in spec.get("methods") or ())
        level = spec.get("authLevel")
        return FunctionInfo(
            name,
            kind,
            str(spec["name"]),
            route=str(spec.get("route") or name),
            methods=methods or ("GET", "POST"),
            auth_level=str(getattr(level, "value", level or "function")).lower(),
        )
    if kind == "queueTrigger":
        return FunctionInfo(
            name, kind, str(spec["name"]), queue_name=str(spec["queueName"]), connection=spec.get("connection")
        )
    if kind == "timerTrigger":
        return FunctionInfo(
            name, kind, str(spec["name"]), schedule=str(spec["schedule"]), run_on_startup=bool(spec.get("runOnStartup"))
        )
    raise ValueError(f"{name}: the local host does not run {kind} functions")


def _import_fresh(path: Path) -> ModuleType:
    """A new module object each time: its import-time code runs again, as in a new worker process."""
    spec = importlib.util.spec_from_file_location(f"function_app_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec.loader.exec_module(module)
    return module


@contextmanager
def environment(env: Mapping[str, str]) -> Any:
    """``env`` as os.environ while function_app.py is imported (it reads its settings then), restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- the child process -------------------------------------------------------------------------


async def _serve(app_root: Path) -> None:
    from aiohttp import web

    try:
        loaded: LoadedApp | None = LoadedApp(app_root)
        functions = [asdict(f) for f in loaded.describe()] if loaded else []
        failure = None
    except Exception:
        loaded, functions, failure = None, [], traceback.format_exc(limit=5)

    async def invoke(request: web.Request) -> web.Response:
        call = await request.json()
        if loaded is None:
            return web.json_response({"ok": False, "error": "no functions were indexed"})
        trace = TraceParent(call["traceparent"], call.get("tracestate") or "") if call.get("traceparent") else None
        try:
            if call["kind"] == "http":
                http = HttpCall(
                    call["method"], call["url"], call["headers"], call["params"], base64.b64decode(call["body"])
                )
                result = await loaded.invoke_http(call["function"], http, trace)
                return web.json_response(
                    {
                        "ok": True,
                        "status": result.status,
                        "headers": result.headers,
                        "body": base64.b64encode(result.body).decode(),
                    }
                )
            if call["kind"] == "timer":
                await loaded.invoke_timer(call["function"], bool(call["past_due"]), trace)
                return web.json_response({"ok": True})
            body = call["body"] if call["text"] else base64.b64decode(call["body"])
            await loaded.invoke_queue(call["function"], body, call["metadata"], trace)
            return web.json_response({"ok": True})
        except InvocationError as exc:
            return web.json_response({"ok": False, "error": str(exc)})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/invoke", invoke)
    _runner, port = await serve_app(app)
    print(json.dumps({"port": port, "functions": functions, "error": failure}), flush=True)
    await asyncio.Event().wait()  # until the host kills or stops this process


def main() -> None:
    parser = argparse.ArgumentParser(description="the local Functions host's language worker (started by it)")
    parser.add_argument("--app-root", type=Path, required=True)
    args = parser.parse_args()
    import logging

    from devtools.worker_telemetry import configure_local_worker
    from recording_pipeline.edges.telemetry import configure_json_logging

    configure_json_logging()
    configure_local_worker(os.environ)  # the worker's init: before function_app.py is imported
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    os.chdir(args.app_root)
    asyncio.run(_serve(args.app_root.resolve()))


if __name__ == "__main__":
    main()
