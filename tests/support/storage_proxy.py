"""A fault proxy before Azurite's blob or queue endpoint: Azure Storage on a bad day, by operation.

The app's connection string points here; every request is forwarded to Azurite as it came (headers, body
streamed, the SharedKey signature untouched: it covers the account's path, not the host), unless a scripted
``StorageFault`` matches it first. The faults are the ones Azure Storage answers under load:

- ``busy``: 503 ``ServerBusy`` with the service's XML error body and ``x-ms-error-code``, the body unread;
- ``timed-out``: 500 ``OperationTimedOut``, likewise;
- ``reset``: the connection reset after ``body_bytes`` of the request's body arrived;
- ``stall``: the request forwarded, its answer held back ``stall_seconds``;
- ``lost-answer``: the request forwarded and carried out, then the connection reset before any answer: the
  write landed, and the client's retry meets what it wrote (409 for a create-only write).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from devtools.loopback import serve_app

_HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
_ERRORS = {
    "busy": (503, "ServerBusy", "The server is busy."),
    "timed-out": (500, "OperationTimedOut", "The operation could not be completed within the permitted time."),
}
KINDS = (*_ERRORS, "reset", "stall", "lost-answer")


@dataclass
class StorageFault:
    """What to do to the next ``times`` requests of ``operation`` (see ``operation_of``) whose path contains
    ``blob`` (any, if empty); ``create_only``: only requests sent with ``If-None-Match: *``."""

    operation: str
    kind: str
    blob: str = ""
    body_bytes: int = 0
    stall_seconds: float = 3.0
    times: int = 1
    create_only: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown storage fault {self.kind!r}: one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class ProxiedRequest:
    operation: str
    path: str
    status: int | None  # what the service (or the fault) answered; None: never forwarded, nothing answered
    fault: str | None
    at: float  # wall-clock time the answer was known
    answered: bool = True  # False: the client never got that answer (a reset, a lost answer)


def operation_of(method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> str:
    """The Storage REST operation a request is, named as in the service's docs (lower case, dashed)."""
    comp, restype = query.get("comp", ""), query.get("restype", "")
    if path.endswith("/messages"):
        return {"POST": "put-message", "GET": "get-messages", "DELETE": "clear-messages"}.get(method, "message")
    if "/messages/" in path:
        return {"DELETE": "delete-message", "PUT": "update-message"}.get(method, "message")
    if restype == "container":
        return "list-blobs" if comp == "list" else f"{method.lower()}-container"
    if method == "PUT":
        if comp == "block":
            return "put-block"
        if comp == "blocklist":
            return "put-block-list"
        if comp == "lease":
            return "lease-blob"
        if not comp and headers.get("x-ms-blob-type"):
            return "put-blob"
        return f"put-{comp or 'other'}"
    if method == "GET":
        return "get-block-list" if comp == "blocklist" else "get-blob" if not comp else f"get-{comp}"
    if method == "HEAD":
        return "get-blob-properties"
    return method.lower()


class StorageFaultProxy:
    """``start()`` serves on a free loopback port; ``connection_string`` is Azurite's, pointed here."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")  # e.g. http://127.0.0.1:10000
        self.faults: list[StorageFault] = []
        self.requests: list[ProxiedRequest] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> StorageFaultProxy:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None), skip_auto_headers=("User-Agent",)
        )
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner, self.port = await serve_app(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def count(self, operation: str, blob: str = "", status: int | str | None = "any") -> int:
        return sum(
            1
            for r in self.requests
            if r.operation == operation and blob in r.path and (status == "any" or r.status == status)
        )

    def faulted(self) -> list[ProxiedRequest]:
        return [r for r in self.requests if r.fault]

    # --- the proxy ---------------------------------------------------------------------------------------

    def _take(self, operation: str, request: web.Request) -> StorageFault | None:
        path = unquote(request.path)
        create_only = request.headers.get("If-None-Match") == "*"
        for fault in self.faults:
            if fault.times <= 0 or fault.operation != operation or fault.blob not in path:
                continue
            if fault.create_only and not create_only:
                continue
            fault.times -= 1
            return fault
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items()}
        lowered = {k.lower(): v for k, v in headers.items()}
        operation = operation_of(request.method, request.path, dict(request.query), lowered)
        fault = self._take(operation, request)
        kind = fault.kind if fault else None
        if fault is not None and fault.kind in _ERRORS:
            status, code, message = _ERRORS[fault.kind]
            self._log(operation, request, status, kind)
            return _error(status, code, message)
        if fault is not None and fault.kind == "reset":
            await _read_at_most(request, fault.body_bytes)
            self._log(operation, request, None, kind, answered=False)
            return _reset(request)
        assert self._session is not None
        forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        body: AsyncIterator[bytes] | None = _body(request) if request.body_exists else None
        async with self._session.request(
            request.method,
            f"{self.upstream}{request.raw_path}",
            headers=forwarded,
            data=body,
            skip_auto_headers=("Content-Type", "Accept-Encoding", "Accept"),
            allow_redirects=False,
        ) as upstream:
            lost = fault is not None and fault.kind == "lost-answer"
            self._log(operation, request, upstream.status, kind, answered=not lost)  # carried out: it has landed
            if lost:
                await upstream.read()
                return _reset(request)
            if fault is not None and fault.kind == "stall":
                await asyncio.sleep(fault.stall_seconds)  # the client may give up meanwhile
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for piece in upstream.content.iter_chunked(256 * 1024):
                await response.write(piece)
            await response.write_eof()
            return response

    def _log(
        self, operation: str, request: web.Request, status: int | None, fault: str | None, answered: bool = True
    ) -> None:
        self.requests.append(ProxiedRequest(operation, unquote(request.path), status, fault, time.time(), answered))


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for piece in request.content.iter_chunked(256 * 1024):
        yield piece


async def _read_at_most(request: web.Request, size: int) -> None:
    left = size
    while left > 0:
        piece = await request.content.read(min(left, 256 * 1024))
        if not piece:
            return
        left -= len(piece)


def _reset(request: web.Request) -> web.Response:
    """Reset the connection (unread request bytes in the socket make the kernel send RST)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)  # never sent: the transport is gone


def _error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}\nRequestId:00000000-0000-0000-0000-000000000000\n"
        f"Time:{time.strftime('%Y-%m-%dT%H:%M:%S.0000000Z', time.gmtime())}</Message></Error>"
    )
    return web.Response(
        status=status,
        body=body.encode(),
        content_type="application/xml",
        headers={"x-ms-error-code": code, "x-ms-request-id": "00000000-0000-0000-0000-000000000000"},
    )
