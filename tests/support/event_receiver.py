"""An Event Grid topic on loopback: an aiohttp server that keeps every request the publisher really sends.

It answers 200 to a POST carrying the expected ``aeg-sas-key`` (401 otherwise), or
what ``fail_next`` says, so tests see the SDK's own serialization, headers and
retries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devtools.loopback import serve_app


@dataclass
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int

    def events(self) -> list[dict[str, Any]]:
        parsed: list[dict[str, Any]] = json.loads(self.body)
        return parsed


@dataclass
class EventReceiver:
    key: str = "loopback-topic-key"
    requests: list[ReceivedRequest] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # statuses to answer with, one request each
    _runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> EventReceiver:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner, self.port = await serve_app(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/events"

    def delivered(self) -> list[dict[str, Any]]:
        """Every event of every request answered 200, in order."""
        return [e for r in self.requests if r.status == 200 for e in r.events()]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_next:
            status = self.fail_next.pop(0)
        elif request.method != "POST":
            status = 405
        else:
            status = 200 if request.headers.get("aeg-sas-key") == self.key else 401
        self.requests.append(
            ReceivedRequest(request.method, request.path, dict(request.query), dict(request.headers), body, status)
        )
        return web.Response(status=status, text="" if status == 200 else json.dumps({"error": {"code": str(status)}}))
