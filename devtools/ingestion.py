"""A loopback Application Insights: the ingestion endpoint the Azure Monitor exporter sends to, and a token endpoint.

The Azure Monitor distro's exporters POST JSON arrays of envelopes to
``{IngestionEndpoint}v2.1/track`` (azure-monitor-opentelemetry-exporter,
``export/_base.py``); the connection string names the endpoint, so a connection string
with ``IngestionEndpoint=http://127.0.0.1:PORT/`` brings everything here. Each
envelope is ``name`` (…RemoteDependency, …Request, …Message, …Exception, …Metric),
``tags`` (``ai.operation.id``: the trace id, ``ai.operation.parentId``: the parent
span), and ``data.baseData`` (a span's ``id``, ``name`` and ``properties``, its
attributes; a log record's ``message`` and ``properties``, its fields, which are
``customDimensions`` in Log Analytics; a metric point's ``metrics``).

With ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` (``Authorization=AAD``), as
``infra/`` deploys it, the exporter gets a token from the managed identity first;
on App Service and Functions the identity endpoint is ``IDENTITY_ENDPOINT`` with
``IDENTITY_HEADER`` (azure-identity's ``AppServiceCredential``), which this server
also answers (over http, as the platform's endpoint is), so the whole chain runs on
loopback and the track requests must carry that token. azure-core sends a bearer
token over TLS only, so ingestion is served over https with a certificate made for
the run, which the exporter (``requests``) trusts through ``REQUESTS_CA_BUNDLE``.

``records`` gives what arrived as plain lines (``span``, ``log``, ``metric``), the
shape the dashboard and the tests read; with a ``path`` they are also appended
there as JSON lines.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from devtools.loopback import loopback_certificate, serve_app

INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"
MONITOR_RESOURCE = "https://monitor.azure.com"


class LoopbackIngestion:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.envelopes: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.token_requests: list[dict[str, str]] = []
        self.identity_header = secrets.token_hex(8)
        self.token = secrets.token_urlsafe(24)
        self.port = self.identity_port = 0
        self._runners: list[web.AppRunner] = []
        self._folder = tempfile.TemporaryDirectory(prefix="ingestion-")
        self.ca_file = Path()

    async def start(self) -> LoopbackIngestion:
        tls, self.ca_file = loopback_certificate(Path(self._folder.name))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{prefix:/*}v2.1/track", self._track)  # the endpoint as given, trailing slash or not
        app.router.add_post("/{prefix:/*}v2/track", self._track)
        app.router.add_post("/{prefix:/*}QuickPulseService.svc/{operation}", self._live_metrics)
        runner, self.port = await serve_app(app, tls=tls)
        identity = web.Application()
        identity.router.add_get("/msi/token", self._token)
        identity_runner, self.identity_port = await serve_app(identity)
        self._runners = [runner, identity_runner]
        return self

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._folder.cleanup()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def connection_string(self) -> str:
        return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={self.url};LiveEndpoint={self.url}"

    def environment(self) -> dict[str, str]:
        """What a worker needs to send here: the connection string, the identity endpoint, and no calls home."""
        return {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": self.connection_string,
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
            "IDENTITY_ENDPOINT": f"http://127.0.0.1:{self.identity_port}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            # The exporter's own usage reports and remote configuration go to fixed Microsoft hosts.
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        }

    async def _token(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return web.json_response({"error": "missing or wrong X-IDENTITY-HEADER"}, status=401)
        self.token_requests.append(dict(request.query))
        return web.json_response(
            {
                "access_token": self.token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": request.query.get("resource", MONITOR_RESOURCE),
                "token_type": "Bearer",
            }
        )

    async def _live_metrics(self, request: web.Request) -> web.Response:
        """Live Metrics (on by default in the distro) pings first; "not subscribed" means: post nothing."""
        await request.read()
        return web.json_response({}, headers={"x-ms-qps-subscribed": "false"})

    async def _track(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        self.authorizations.append(request.headers.get("Authorization", ""))
        received = json.loads(body)
        batch = received if isinstance(received, list) else [received]
        self.envelopes.extend(batch)
        if self.path is not None:
            lines = [json.dumps(r, default=str) for e in batch for r in envelope_records(e)]
            if lines:
                await asyncio.to_thread(_append, self.path, lines)
        return web.json_response({"itemsReceived": len(batch), "itemsAccepted": len(batch), "errors": []})

    def records(self) -> list[dict[str, Any]]:
        return [r for e in self.envelopes for r in envelope_records(e)]


def _append(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def envelope_records(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    """One envelope as the lines a reader wants: spans with their parents, log records, metric points."""
    name = str(envelope.get("name", "")).rsplit(".", 1)[-1]
    base = (envelope.get("data") or {}).get("baseData") or {}
    tags = envelope.get("tags") or {}
    time_ns = _nanoseconds(str(envelope.get("time", "")))
    properties = dict(base.get("properties") or {})
    if name in ("RemoteDependency", "Request"):
        return [
            {
                "record": "span",
                "envelope": name,
                "name": base.get("name"),
                "trace_id": tags.get("ai.operation.id"),
                "span_id": base.get("id"),
                "parent_span_id": tags.get("ai.operation.parentId"),
                "success": base.get("success"),
                "time": time_ns,
                "attributes": properties,
            }
        ]
    if name in ("Message", "Exception"):
        message = base.get("message")
        if message is None and base.get("exceptions"):
            message = base["exceptions"][0].get("message")
        return [
            {
                "record": "log",
                "envelope": name,
                "time": time_ns,
                "severity": base.get("severityLevel"),
                "body": message or "",
                "trace_id": tags.get("ai.operation.id"),
                "span_id": tags.get("ai.operation.parentId"),
                "attributes": properties,
            }
        ]
    if name == "Metric":
        return [
            {
                "record": "metric",
                "name": point.get("name"),
                "time": time_ns,
                "value": point.get("value"),
                "count": point.get("count"),
                "attributes": properties,
            }
            for point in base.get("metrics") or []
        ]
    return []


def _nanoseconds(stamp: str) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return 0


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every line a local run wrote (a line cut short by a killed process is skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
