"""ACS recording storage on loopback, for tests, the demo and the benchmark.

Behaves like the service where the pipeline depends on it: the same URL shapes
(``/v1/objects/{documentId}/content/{video|audio|acsmetadata}``,
``DELETE /v1/objects/{documentId}``, and the legacy
``/recording/download/{documentId}[/metadata]``), HMAC verification over the
ACS endpoint host named in ``x-ms-host``, Range requests, and content of any
size generated deterministically (nothing is held in memory). Faults can be
scripted per request to reproduce what ACS does on a bad day.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import web

from devtools.loopback import serve_app

SEGMENT = 1024 * 1024
_BASE = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(SEGMENT // 32))
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_CONTENT_KINDS = {"mp4": "video", "mp3": "audio", "wav": "audio"}
_MEDIA_TYPES = {"mp4": "video/mp4", "mp3": "audio/mpeg", "wav": "audio/wav"}


def content_segments(seed: int, start: int, end: int) -> Iterator[bytes]:
    """Bytes [start, end) of the file with ``seed``: each MiB is unique, so misordered blocks show."""
    position = start
    while position < end:
        segment, within = divmod(position, SEGMENT)
        data = struct.pack(">QQ", seed, segment) + _BASE[16:]
        piece = data[within : within + (end - position)]
        position += len(piece)
        yield piece


def content_sha256(seed: int, size: int) -> str:
    hasher = hashlib.sha256()
    for piece in content_segments(seed, 0, size):
        hasher.update(piece)
    return hasher.hexdigest()


@dataclass
class Fault:
    """What to do to the next ``times`` matching requests.

    ``status``: answer with it (and ``retry_after``); ``body_bytes`` with ``action``
    ``reset``/``truncate``/``stall``: send that many body bytes, then reset the
    connection, close early, or stall for ``stall_seconds``; ``empty``: 200 with no body;
    ``redirect``: 307 to ``location``.
    """

    method: str = "GET"
    kind: str = "media"  # media | metadata | delete
    status: int | None = None
    retry_after: float | None = None
    action: str | None = None
    body_bytes: int = 0
    stall_seconds: float = 30.0
    times: int = 1
    html_body: bool = False
    location: str | None = None  # with action "redirect": answer 307 to here


@dataclass
class SimRecording:
    document_id: str
    size: int
    format: str = "mp4"
    seed: int = 0
    participants: list[str] = field(default_factory=lambda: ["8:acs:participant-a", "4:+14255550123"])
    chunk_index: int = 0
    call_id: str = "call"
    metadata_override: bytes | None = None
    declare_size: bool = True  # False: no Content-Length (chunked), no total in Content-Range
    rate: float | None = None  # bytes per second: a slow link, for transfers that must take their time
    faults: list[Fault] = field(default_factory=list)  # for this recording only, before the simulator's own

    @property
    def sha256(self) -> str:
        return content_sha256(self.seed, self.size)

    @property
    def etag(self) -> str:
        """Like a storage service's: stable for the file, quoted."""
        return f'"0x{hashlib.sha256(f"{self.document_id}/{self.seed}/{self.size}".encode()).hexdigest()[:16].upper()}"'

    @property
    def last_modified(self) -> str:
        return "Tue, 01 Dec 2026 09:00:00 GMT"

    def metadata(self) -> bytes:
        if self.metadata_override is not None:
            return self.metadata_override
        doc = {
            "resourceId": "00000000-0000-0000-0000-000000000000",
            "callId": self.call_id,
            "chunkDocumentId": self.document_id,
            "chunkIndex": self.chunk_index,
            "chunkStartTime": "2026-11-23T10:00:00.000Z",
            "chunkDuration": max(1, self.size // 125),
            "pauseResumeIntervals": [],
            "recordingInfo": {
                "contentType": "audioVideo" if self.format == "mp4" else "audio",
                "channelType": "mixed",
                "format": self.format,
                "audioConfiguration": {"sampleRate": 16000, "bitRate": 32000, "channels": 1},
            },
            "participants": [{"participantId": p} for p in self.participants],
        }
        return json.dumps(doc).encode()


@dataclass
class SeenRequest:
    method: str
    path: str
    kind: str
    document_id: str
    range: str | None
    status: int
    at: float
    authorized: bool


class RecordingSimulator:
    """An aiohttp app; ``await start()`` binds it, ``base_url`` is where it listens."""

    def __init__(
        self,
        endpoint_host: str | None = None,
        access_key: str | None = None,
        bearer_tokens: set[str] | None = None,
        clock_skew: timedelta = timedelta(minutes=15),
    ) -> None:
        self.access_key = access_key or base64.b64encode(b"simulator-access-key-0123456789").decode()
        self.endpoint_host = endpoint_host  # set from the bound address when None
        self.bearer_tokens = bearer_tokens or set()
        self.clock_skew = clock_skew
        self.recordings: dict[str, SimRecording] = {}
        self.deleted: set[str] = set()
        self._deleting: set[str] = set()  # DELETEs being honoured (their on_delete hook is running)
        self.deleted_at: dict[str, float] = {}  # document id -> wall-clock time of its successful DELETE
        self.bytes_served: dict[str, int] = {}
        self.requests: list[SeenRequest] = []
        self.faults: list[Fault] = []
        self.on_delete: Callable[[SimRecording], Awaitable[None]] | None = None
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.app = web.Application()
        self.app.router.add_route("GET", "/v1/objects/{doc}/content/{kind}", self._get)
        self.app.router.add_route("DELETE", "/v1/objects/{doc}", self._delete)
        self.app.router.add_route("GET", "/recording/download/{doc}", self._get_legacy)
        self.app.router.add_route("GET", "/recording/download/{doc}/metadata", self._get_legacy_metadata)

    # --- lifecycle --------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner, bound = await serve_app(self.app, host, port)
        self.base_url = f"http://{host}:{bound}"
        if self.endpoint_host is None:
            self.endpoint_host = f"{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.base_url}/;accesskey={self.access_key}"

    # --- recordings and events -------------------------------------------

    def add(self, document_id: str, size: int, fmt: str = "mp4", **kwargs: Any) -> SimRecording:
        seed = int.from_bytes(hashlib.sha256(document_id.encode()).digest()[:8], "big")
        recording = SimRecording(document_id, size, fmt, seed, **kwargs)
        self.recordings[document_id] = recording
        return recording

    def chunk_urls(self, recording: SimRecording) -> dict[str, str]:
        base = f"{self.base_url}/v1/objects/{recording.document_id}"
        return {
            "contentLocation": f"{base}/content/{_CONTENT_KINDS.get(recording.format, 'video')}",
            "metadataLocation": f"{base}/content/acsmetadata",
            "deleteLocation": base,
        }

    def event(
        self,
        call_id: str,
        recording_id: str | None,
        chunks: list[SimRecording],
        server_call_id: str = "c2VydmVyLWNhbGwtaWQ",
        topic: str | None = None,
        event_id: str | None = None,
        final_index: int | None = None,
    ) -> dict[str, Any]:
        """A RecordingFileStatusUpdated event (Event Grid schema) for ``chunks`` of this simulator."""
        last = final_index if final_index is not None else max(c.chunk_index for c in chunks)
        now = datetime.now(UTC)
        subject = f"/recording/call/{call_id}/serverCallId/{server_call_id}"
        if recording_id:
            subject += f"/recordingId/{recording_id}"
        return {
            "id": event_id
            or hashlib.sha256(f"{call_id}{recording_id}{[c.document_id for c in chunks]}".encode()).hexdigest()[:32],
            "topic": topic
            or "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
            "Microsoft.Communication/communicationServices/acs-sim",
            "subject": subject,
            "data": {
                "recordingStorageInfo": {
                    "recordingChunks": [
                        {
                            "documentId": c.document_id,
                            "index": c.chunk_index,
                            "endReason": "SessionEnded" if c.chunk_index == last else "ChunkMaximumSizeExceeded",
                            **self.chunk_urls(c),
                        }
                        for c in chunks
                    ]
                },
                # The recording ended a minute before the event, as ACS publishes it "a few minutes" after.
                "recordingStartTime": (now - timedelta(minutes=1 + max(1, len(chunks)))).isoformat(),
                "recordingDurationMs": 60_000 * max(1, len(chunks)),
                "sessionEndReason": "CallEnded",
            },
            "eventType": "Microsoft.Communication.RecordingFileStatusUpdated",
            "dataVersion": "1.0",
            "metadataVersion": "1",
            "eventTime": now.isoformat(),
        }

    def count(
        self, method: str, kind: str | None = None, document_id: str | None = None, authorized_only: bool = True
    ) -> int:
        return sum(
            1
            for r in self.requests
            if r.method == method
            and (kind is None or r.kind == kind)
            and (document_id is None or r.document_id == document_id)
            and (r.authorized or not authorized_only)
        )

    # --- handlers ---------------------------------------------------------

    async def _get(self, request: web.Request) -> web.StreamResponse:
        kind = "metadata" if request.match_info["kind"] == "acsmetadata" else "media"
        return await self._serve(request, request.match_info["doc"], kind)

    async def _get_legacy(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, request.match_info["doc"], "media")

    async def _get_legacy_metadata(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, request.match_info["doc"], "metadata")

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        doc = request.match_info["doc"]
        refused = self._refuse(request, doc, "delete")
        if refused is not None:
            return refused
        fault = self._take_fault("DELETE", "delete", self.recordings.get(doc))
        if fault is not None and fault.status:
            return self._log(request, doc, "delete", _error(fault))
        recording = self.recordings.get(doc)
        if recording is None or doc in self.deleted or doc in self._deleting:
            return self._log(request, doc, "delete", _json_error(404, "NotFound", "no such recording"))
        # One DELETE wins, as in a real store: a second one arriving while the hook looks at the archive is
        # answered 404, not honoured twice.
        self._deleting.add(doc)
        try:
            if self.on_delete is not None:
                await self.on_delete(recording)
        finally:
            self._deleting.discard(doc)
        self.deleted.add(doc)
        self.deleted_at[doc] = time.time()
        return self._log(request, doc, "delete", web.Response(status=200))

    async def _serve(self, request: web.Request, doc: str, kind: str) -> web.StreamResponse:
        refused = self._refuse(request, doc, kind)
        if refused is not None:
            return refused
        recording = self.recordings.get(doc)
        if recording is None or doc in self.deleted:
            return self._log(request, doc, kind, _json_error(404, "NotFound", "no such recording"))
        fault = self._take_fault("GET", kind, recording)
        if fault is not None and fault.status:
            return self._log(request, doc, kind, _error(fault))
        if fault is not None and fault.action == "redirect" and fault.location:
            return self._log(request, doc, kind, web.Response(status=307, headers={"Location": fault.location}))
        if kind == "metadata":
            body = recording.metadata()
            if fault is not None and fault.action == "empty":
                body = b""
            return self._log(request, doc, kind, web.Response(body=body, content_type="application/json"))
        return await self._stream(request, recording, fault)

    async def _stream(self, request: web.Request, recording: SimRecording, fault: Fault | None) -> web.StreamResponse:
        size = recording.size
        start, end = 0, size
        status = 200
        header = request.headers.get("Range")
        if header:
            match = _RANGE.match(header)
            if not match or int(match[1]) >= size:
                return self._log(
                    request,
                    recording.document_id,
                    "media",
                    web.Response(status=416, headers={"Content-Range": f"bytes */{size}"}),
                )
            start = int(match[1])
            end = min(size, int(match[2]) + 1) if match[2] else size
            status = 206
        response = web.StreamResponse(status=status)
        response.content_type = _MEDIA_TYPES.get(recording.format, "application/octet-stream")
        if fault is not None and fault.action == "empty":
            response.content_length = 0
            await response.prepare(request)
            self._log(request, recording.document_id, "media", response)
            return response
        if recording.declare_size:
            response.content_length = end - start
        response.headers["Accept-Ranges"] = "bytes"
        response.headers["ETag"] = recording.etag
        response.headers["Last-Modified"] = recording.last_modified
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size if recording.declare_size else '*'}"
        await response.prepare(request)
        self._log(request, recording.document_id, "media", response)
        limit = start + fault.body_bytes if fault is not None and fault.action else end
        sent = start
        served = self.bytes_served
        for segment in content_segments(recording.seed, start, min(end, limit)):
            for piece in _paced(segment, recording.rate):
                await response.write(piece)
                sent += len(piece)
                served[recording.document_id] = served.get(recording.document_id, 0) + len(piece)
                if recording.rate:
                    await asyncio.sleep(len(piece) / recording.rate)
        if sent < end and fault is not None:
            if fault.action == "stall":
                await asyncio.sleep(fault.stall_seconds)
            transport = request.transport
            if transport is not None:
                if fault.action == "reset":
                    transport.abort()
                else:
                    transport.close()
            return response
        await response.write_eof()
        return response

    # --- auth, faults, bookkeeping ---------------------------------------

    def _refuse(self, request: web.Request, doc: str, kind: str) -> web.Response | None:
        problem = self._auth_problem(request)
        if problem is None:
            return None
        self.requests.append(
            SeenRequest(
                request.method, request.path_qs, kind, doc, request.headers.get("Range"), 401, time.monotonic(), False
            )
        )
        return _json_error(401, "Unauthorized", problem)

    def _auth_problem(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return None if auth[7:] in self.bearer_tokens else "unknown bearer token"
        date = request.headers.get("x-ms-date", "")
        host = request.headers.get("x-ms-host", "")
        content_hash = request.headers.get("x-ms-content-sha256", "")
        if not (auth.startswith("HMAC-SHA256 ") and date and host and content_hash):
            return "missing HMAC headers"
        if host != self.endpoint_host:
            return "x-ms-host is not this resource's endpoint"
        try:
            sent_at = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return "x-ms-date is not an RFC 1123 date"
        if abs(datetime.now(UTC) - sent_at) > self.clock_skew:
            return "x-ms-date is too far from now"
        if content_hash != base64.b64encode(hashlib.sha256(b"").digest()).decode():
            return "x-ms-content-sha256 does not match the (empty) body"
        fields = dict(part.split("=", 1) for part in auth[len("HMAC-SHA256 ") :].split("&") if "=" in part)
        if fields.get("SignedHeaders") != "x-ms-date;host;x-ms-content-sha256":
            return "unexpected SignedHeaders"
        to_sign = f"{request.method}\n{request.path_qs}\n{date};{host};{content_hash}"
        expected = base64.b64encode(
            hmac.new(base64.b64decode(self.access_key), to_sign.encode(), hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            return "signature mismatch"
        return None

    def _take_fault(self, method: str, kind: str, recording: SimRecording | None = None) -> Fault | None:
        for fault in [*(recording.faults if recording else []), *self.faults]:
            if fault.method == method and fault.kind == kind and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _log(self, request: web.Request, doc: str, kind: str, response: web.StreamResponse) -> web.StreamResponse:
        self.requests.append(
            SeenRequest(
                request.method,
                request.path_qs,
                kind,
                doc,
                request.headers.get("Range"),
                response.status,
                time.monotonic(),
                True,
            )
        )
        return response


def _paced(segment: bytes, rate: float | None) -> Iterator[bytes]:
    """The segment whole, or in pieces of a tenth of a second each on a slow link."""
    if not rate:
        yield segment
        return
    step = max(1, int(rate / 10))
    for offset in range(0, len(segment), step):
        yield segment[offset : offset + step]


def to_cloudevent(event: dict[str, Any]) -> dict[str, Any]:
    """The same event in the CloudEvents 1.0 schema, as Event Grid delivers it to CloudEvents subscriptions."""
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": event["topic"],
        "subject": event["subject"],
        "type": event["eventType"],
        "time": event["eventTime"],
        "data": event["data"],
    }


def _error(fault: Fault) -> web.Response:
    status = fault.status or 500
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.html_body:
        return web.Response(
            status=status, text="<html><body>Bad Request</body></html>", content_type="text/html", headers=headers
        )
    return _json_error(status, "Injected", f"injected {status}", headers)


def _json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        headers=headers,
        text=json.dumps({"error": {"code": code, "message": message}}),
        content_type="application/json",
    )
