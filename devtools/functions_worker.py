"""The language worker of the local Functions host: Microsoft's ``azure_functions_runtime`` behind a small proxy.

On Python 3.13+ the Python worker is a proxy that owns the host's gRPC stream and
hands each request to ``azure_functions_runtime``, the package the app pins in
requirements.txt (azure-functions-python-worker, ``proxy_worker/dispatcher.py``;
"Python 3.13+ changes" in the Functions docs). The runtime does the rest: it
imports function_app.py and indexes it, converts each TypedData to the trigger's
argument (``azure.functions``' converters), attaches the host's trace context,
runs the function (async on this event loop, sync on its thread pool), and turns
the result or the exception into the response.

``RuntimeWorker`` is that proxy's part here: a request, as the host sent it (the
JSON form of ``devtools.worker_messages``), becomes message objects, goes to the
runtime's handler for its kind with ``properties = {"protos": worker_messages,
"host": ...}``, and the runtime's response goes back as JSON. The host side
(``local_host``) builds the requests; nothing here interprets a function.

Run as a process (``python -m devtools.functions_worker``), it answers the host on a
loopback port, so the host can kill it the way the real host kills a timed-out
worker. ``InProcessWorker`` in ``worker_channel`` runs the same proxy in the host's
process, for fast tests.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure_functions_runtime as runtime

from devtools import worker_messages
from devtools.loopback import serve_app
from devtools.worker_messages import StreamingMessage

log = logging.getLogger(__name__)

# The request each handler of the runtime takes, and the field of the StreamingMessage its response goes in.
HANDLERS: dict[str, tuple[Callable[[Any], Awaitable[Any]], str]] = {
    "worker_init_request": (runtime.worker_init_request, "worker_init_response"),
    "functions_metadata_request": (runtime.functions_metadata_request, "function_metadata_response"),
    "function_load_request": (runtime.function_load_request, "function_load_response"),
    "invocation_request": (runtime.invocation_request, "invocation_response"),
}


@dataclass
class _Envelope:
    """What the proxy hands the runtime: the message, and the classes and host address it answers with."""

    request: StreamingMessage
    properties: dict[str, Any] = field(default_factory=dict)


class RuntimeWorker:
    """The proxy: one host request in, the runtime's response out, both in their JSON form."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host

    async def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        request = StreamingMessage.from_json(message)
        kind = request.WhichOneof("content")
        if kind not in HANDLERS:
            raise ValueError(f"the worker does not take {kind}")
        if kind == "worker_init_request":
            self._before_init(request.worker_init_request.function_app_directory)
        handler, answer = HANDLERS[kind]
        try:
            response = await handler(_Envelope(request, {"protos": worker_messages, "host": self.host}))
        except Exception:
            raise
        except BaseException as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # this worker is being stopped
            # The runtime wraps an invocation in ``except Exception`` (azure_functions_runtime/handle_event.py); the
            # proxy runs each request as a task of its own and queues its response when the handler returns
            # (azure-functions-python-worker, proxy_worker/dispatcher.py ``_dispatch_grpc_request``). A function
            # that lets a CancelledError out ends that task: no InvocationResponse is ever sent, and the host waits
            # for one until functionTimeout, then restarts the worker. So does this worker.
            log.error("%s ended with %s: no response is sent", kind, type(exc).__name__)
            await asyncio.Event().wait()
            raise AssertionError("unreachable") from None
        return StreamingMessage(request_id=request.request_id, **{answer: response}).to_json()

    @staticmethod
    def _before_init(app_directory: str) -> None:
        """What the proxy does before it hands over the init: the app's folder importable, the thread pool up."""
        if app_directory in sys.path:
            sys.path.remove(app_directory)
        sys.path.insert(0, app_directory)
        # A new import of function_app.py, as in a new worker process (its import-time code reads the settings).
        sys.modules.pop("function_app", None)
        importlib.invalidate_caches()
        runtime.start_threadpool_executor()


async def _serve(host: str) -> None:
    from aiohttp import web

    worker = RuntimeWorker(host)

    async def rpc(request: web.Request) -> web.Response:
        return web.json_response(await worker.handle(await request.json()))

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/rpc", rpc)
    _runner, port = await serve_app(app)
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()  # until the host kills or stops this process


def main() -> None:
    parser = argparse.ArgumentParser(description="the local Functions host's language worker (started by it)")
    parser.add_argument("--app-root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    from recording_pipeline.edges.telemetry import configure_json_logging

    # The real proxy sends log lines to the host (RpcLog) until the runtime says WorkerOpenTelemetryEnabled;
    # here they go to stderr, where the host's go.
    configure_json_logging()
    logging.getLogger("azure.functions").setLevel(logging.WARNING)  # the runtime's own line per invocation
    logging.getLogger("azure.monitor.opentelemetry.exporter").setLevel(logging.WARNING)  # a line per export
    os.chdir(args.app_root)
    asyncio.run(_serve(args.host))


if __name__ == "__main__":
    main()
