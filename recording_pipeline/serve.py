"""The local host: what Functions does for us in Azure, on aiohttp, for machines
without Functions Core Tools.

- ``POST|OPTIONS /api/recording-events`` → the same handle_delivery, behind
  ``WEBHOOK_KEY`` (header ``x-functions-key`` or ``?code=``), like FUNCTION auth;
- ``GET /api/health``;
- queue workers calling the same handle_chunk_message, keeping a message
  invisible while its chunk is in flight, retrying after a delay, and moving a
  message to ``<queue>-poison`` after the last attempt, like the Functions host.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
from contextlib import suppress

from aiohttp import web
from azure.storage.queue import QueueMessage

from .chunk_queue import ChunkQueue
from .errors import ConfigurationError
from .runtime import Runtime
from .settings import Settings
from .webhook import WebhookRequest, handle_delivery
from .worker import ChunkWorker, handle_chunk_message

log = logging.getLogger(__name__)

WEBHOOK_ROUTE = "/api/recording-events"


def build_app(runtime: Runtime, webhook_key: str) -> web.Application:
    async def recording_events(request: web.Request) -> web.Response:
        supplied = request.headers.get("x-functions-key") or request.query.get("code") or ""
        if not hmac.compare_digest(supplied.encode(), webhook_key.encode()):
            return web.json_response({"error": "missing or wrong function key"}, status=401)
        body = await request.read() if request.method == "POST" else b""
        response = await handle_delivery(
            WebhookRequest(request.method, dict(request.headers), body), runtime.webhook, runtime.queue, runtime.audit
        )
        return web.Response(
            status=response.status,
            body=response.json_bytes(),
            headers=response.headers,
            content_type="application/json" if response.body is not None else None,
        )

    async def health(_request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "queue": runtime.queue.name, "container": runtime.store.container_name}
        )

    app = web.Application(client_max_size=runtime.settings.max_body_bytes + 1)
    app.router.add_route("POST", WEBHOOK_ROUTE, recording_events)
    app.router.add_route("OPTIONS", WEBHOOK_ROUTE, recording_events)
    app.router.add_route("GET", "/api/health", health)
    return app


class QueueWorkers:
    """Poll the chunk queue and run up to ``concurrency`` chunks at once."""

    def __init__(
        self,
        queue: ChunkQueue,
        worker: ChunkWorker,
        concurrency: int,
        retry_delay: float,
        poll_interval: float = 1.0,
        visibility: int = 60,
    ) -> None:
        self.queue, self.worker = queue, worker
        self.concurrency = concurrency
        self.retry_delay = retry_delay
        self.poll_interval = poll_interval
        self.visibility = visibility
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        idle = 0.05
        while not stop.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                batch = await self.queue.receive(min(free, 32), self.visibility)
            except Exception as exc:
                log.warning("could not read the chunk queue: %s", exc)
                batch = []
            for message in batch:
                task = asyncio.create_task(self._process(message))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            if batch:
                idle = 0.05
                continue
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), idle)
            idle = min(idle * 2, self.poll_interval)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _process(self, message: QueueMessage) -> None:
        attempts = int(message.dequeue_count or 1)
        if attempts > self.worker.max_attempts:
            # The last attempt died without an answer (the process was killed): quarantine as the host does.
            await self.queue.send_poison(str(message.content), "no attempt finished", attempts - 1, None)
            await self.queue.delete(message)
            return
        keeper = asyncio.create_task(self._keep_invisible(message))
        try:
            await handle_chunk_message(str(message.content), attempts, self.worker)
        except Exception:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            with suppress(Exception):
                await self.queue.hide(message, int(self.retry_delay))
            return
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        try:
            await self.queue.delete(message)
        except Exception as exc:  # it comes back and finds the chunk archived: harmless
            log.warning("could not delete a finished queue message: %s", exc)

    async def _keep_invisible(self, message: QueueMessage) -> None:
        while True:
            await asyncio.sleep(self.visibility / 3)
            try:
                await self.queue.hide(message, self.visibility)
            except Exception as exc:
                log.warning("could not extend a message's invisibility: %s", exc)


async def serve(settings: Settings, host: str, port: int, workers: int | None = None) -> None:
    """Run until SIGINT/SIGTERM."""
    if not settings.webhook_key:
        raise ConfigurationError("serve needs WEBHOOK_KEY: the webhook must not be open to anyone")
    runtime = await Runtime.start(settings)
    runner = web.AppRunner(build_app(runtime, settings.webhook_key), access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info(
            "serving %s on http://%s:%d (queue %s, container %s)",
            WEBHOOK_ROUTE,
            host,
            port,
            settings.chunk_queue_name,
            settings.archive_container,
        )
        loop_workers = QueueWorkers(
            runtime.queue,
            runtime.worker,
            workers or settings.worker_concurrency,
            settings.retry_delay_seconds,
            visibility=settings.queue_visibility_seconds,
        )
        await loop_workers.run(stop)
    finally:
        await runner.cleanup()
        await runtime.close()
