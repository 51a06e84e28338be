"""Hostile input: forged URLs must not receive a single request, redirects must
not carry credentials, deliveries can demand Entra tokens, and no secret ever
reaches a log line."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.loopback import serve_app
from devtools.simulator import Fault
from recording_pipeline.app.webhook import WebhookRequest, handle_delivery
from recording_pipeline.app.worker import handle_chunk_message
from recording_pipeline.core.naming import quarantine_invalid_name
from recording_pipeline.runtime import Runtime
from tests.support.stack import Stack

CALL = "eeeeeeee-0000-0000-0000-000000000000"
MIB = 1024 * 1024


@dataclass
class Listener:
    """An HTTP server that records every request it gets."""

    host: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    body: bytes = b"{}"
    runner: web.AppRunner | None = None
    base_url: str = ""

    async def start(self) -> Listener:
        async def anything(request: web.Request) -> web.Response:
            self.seen.append({"method": request.method, "path": request.path_qs, "headers": dict(request.headers)})
            return web.Response(body=self.body, content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        self.runner, port = await serve_app(app, self.host)
        self.base_url = f"http://{self.host}:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def evil() -> AsyncIterator[Listener]:
    server = await Listener("127.0.0.2").start()  # another loopback address: never on the allow list
    yield server
    await server.stop()


async def _post(runtime: Runtime, events: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = await handle_delivery(
        WebhookRequest("POST", headers or {}, json.dumps(events).encode()),
        runtime.webhook,
        runtime.queue,
        runtime.audit,
    )
    return response.status, response.body


URL_FIELDS = ["contentLocation", "metadataLocation", "deleteLocation"]


def _evil_variants(evil: Listener, stack: Stack) -> list[str]:
    sim_port = stack.simulator.base_url.rsplit(":", 1)[1]
    return [
        f"{evil.base_url}/v1/objects/doc/content/video",  # an unlisted IP literal
        f"{evil.base_url.replace('http://', 'https://')}/v1/objects/doc",  # https, still unlisted
        f"http://user:pw@127.0.0.2:{evil.base_url.rsplit(':', 1)[1]}/v1/objects/doc",  # userinfo
        f"http://127.0.0.1@127.0.0.2:{evil.base_url.rsplit(':', 1)[1]}/x",  # the classic @ trick
        f"http://127.0.0.2\\.127.0.0.1:{sim_port}/x",  # a backslash host trick
        f"http://0x7f000002:{evil.base_url.rsplit(':', 1)[1]}/x",  # the evil IP in hex
    ]


@pytest.mark.parametrize("url_field", URL_FIELDS)
async def test_no_request_reaches_an_unlisted_host_through_the_webhook(
    stack: Stack, runtime: Runtime, evil: Listener, url_field: str
) -> None:
    sim = stack.simulator
    for n, bad in enumerate(_evil_variants(evil, stack)):
        chunk = sim.add(f"doc-{url_field}-{n}", MIB, call_id=CALL)
        event = sim.event(CALL, f"rec{n}", [chunk])
        event["data"]["recordingStorageInfo"]["recordingChunks"][0][url_field] = bad
        status, body = await _post(runtime, [event])
        assert status == 400, (bad, body)
        assert url_field in body["rejected"][0]
    assert await stack.peek() == []
    assert evil.seen == []


def _forged_job(stack: Stack, **changes: Any) -> str:
    """A job as raw queue text, written by someone who bypassed the webhook."""
    sim = stack.simulator
    chunk = sim.recordings.get("doc-forged") or sim.add("doc-forged", MIB, call_id=CALL)
    urls = sim.chunk_urls(chunk)
    now = datetime.now(UTC)
    job = {
        "version": 1,
        "event_id": "forged",
        "event_time": now.isoformat(),
        "expires_at": (now + timedelta(hours=1)).isoformat(),
        "call_id": CALL,
        "recording_id": "forged",
        "recording_key": "r-forged",
        "chunk_index": 0,
        "document_id": "doc-forged",
        "content_url": urls["contentLocation"],
        "metadata_url": urls["metadataLocation"],
        "delete_url": urls["deleteLocation"],
        **changes,
    }
    return json.dumps(job)


@pytest.mark.parametrize("url_field", ["content_url", "metadata_url", "delete_url"])
async def test_a_forged_queue_job_sends_nothing_off_the_list(
    stack: Stack, runtime: Runtime, evil: Listener, url_field: str
) -> None:
    """Someone with write access to the queue is still not able to aim our credentials."""
    forged = _forged_job(stack, **{url_field: f"{evil.base_url}/v1/objects/doc-forged/content/video"})
    await handle_chunk_message(forged, 1, runtime.worker)
    assert evil.seen == []
    [poisoned] = await stack.peek(poison=True)
    assert "UnsafeUrlError" in json.loads(poisoned.content)["error"]
    assert "doc-forged" not in stack.simulator.deleted


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"call_id": "../../other-call"}, "callId"),
        ({"document_id": "doc-forged/../x"}, "documentId"),
        ({"recording_key": "r-someone-else"}, "recording_key"),
        ({"delete_url": "PLACEHOLDER"}, "deleteLocation does not name chunk"),
    ],
)
async def test_a_forged_queue_job_is_quarantined_before_any_request(
    stack: Stack, runtime: Runtime, changes: dict[str, str], reason: str
) -> None:
    """Ids are checked on every decode, and a job may only delete the chunk it copies."""
    victim = stack.simulator.add("doc-victim", MIB, call_id=CALL)
    if changes.get("delete_url") == "PLACEHOLDER":
        changes = {"delete_url": stack.simulator.chunk_urls(victim)["deleteLocation"]}
    before = len(stack.simulator.requests)
    forged = _forged_job(stack, **changes)
    await handle_chunk_message(forged, 1, runtime.worker)
    assert len(stack.simulator.requests) == before  # not even the metadata was fetched
    [poisoned] = await stack.peek(poison=True)
    assert reason in json.loads(poisoned.content)["error"]
    assert stack.simulator.deleted == set()
    # Nothing written in the archive; the quarantine record, in the state container, is named by the message's
    # digest, not by its ids.
    assert [n async for n in runtime.archive.list_names("")] == []
    names = [n async for n in runtime.state.list_names("")]
    assert names == [quarantine_invalid_name(forged)]
    record = await runtime.state.read_json(names[0])
    assert record is not None and record[0]["original"] == forged and record[0]["job"] is None


async def test_a_redirect_off_the_list_is_not_followed(stack: Stack, runtime: Runtime, evil: Listener) -> None:
    sim = stack.simulator
    chunk = sim.add("doc-redirect-evil", MIB, call_id=CALL)
    sim.faults.append(Fault(kind="metadata", action="redirect", location=f"{evil.base_url}/collect"))
    status, _ = await _post(runtime, [sim.event(CALL, "recR", [chunk])])
    assert status == 200
    [message] = await stack.receive()
    await handle_chunk_message(str(message.content), 1, runtime.worker)
    assert evil.seen == []
    [poisoned] = await stack.peek(poison=True)
    assert "redirect target" in json.loads(poisoned.content)["error"]


async def test_a_redirect_on_the_list_is_followed_without_credentials(stack: Stack, runtime: Runtime) -> None:
    sim = stack.simulator
    chunk = sim.add("doc-redirect-ok", MIB, call_id=CALL)
    mirror = await Listener("127.0.0.1").start()  # 127.0.0.1 is listed exactly in these tests
    mirror.body = chunk.metadata()
    try:
        sim.faults.append(Fault(kind="metadata", action="redirect", location=f"{mirror.base_url}/signed-elsewhere"))
        await _post(runtime, [sim.event(CALL, "recOk", [chunk])])
        [message] = await stack.receive()
        await handle_chunk_message(str(message.content), 1, runtime.worker)
        assert len(mirror.seen) == 1
        sent = {k.lower() for k in mirror.seen[0]["headers"]}
        assert not sent & {"authorization", "x-ms-date", "x-ms-content-sha256", "x-ms-host"}
        assert "doc-redirect-ok" in sim.deleted
    finally:
        await mirror.stop()


# --- Entra ID-protected delivery -------------------------------------------------

TENANT = "11111111-2222-3333-4444-555555555555"
AUDIENCE = "api://recording-archive"


@dataclass
class Tenant:
    jwks: Listener
    key: rsa.RSAPrivateKey
    kid: str = "key-1"

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "appid": "4962773b-9cdb-44cf-a8bf-237846a00ab7",
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": claims.pop("kid", self.kid)})


@pytest.fixture
async def tenant() -> AsyncIterator[Tenant]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    server = Listener("127.0.0.1")
    server.body = json.dumps({"keys": [{**public, "kid": "key-1", "use": "sig", "alg": "RS256"}]}).encode()
    await server.start()
    yield Tenant(server, key)
    await server.stop()


async def test_entra_protected_delivery(stack: Stack, tenant: Tenant) -> None:
    runtime = await stack.runtime(
        WEBHOOK_ENTRA_TENANT_ID=TENANT,
        WEBHOOK_ENTRA_AUDIENCE=AUDIENCE,
        WEBHOOK_ENTRA_JWKS_URL=f"{tenant.jwks.base_url}/discovery/v2.0/keys",
    )
    sim = stack.simulator
    event = sim.event(CALL, "recE", [sim.add("doc-entra", MIB, call_id=CALL)])
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    refused = {
        "no token": None,
        "not bearer": "Basic dXNlcjpwdw==",
        "garbage": "Bearer not-a-jwt",
        "wrong audience": f"Bearer {tenant.token(aud='api://someone-else')}",
        "wrong issuer": f"Bearer {tenant.token(iss='https://login.microsoftonline.com/other-tenant/v2.0')}",
        "expired": f"Bearer {tenant.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600)}",
        "forged signature": "Bearer "
        + jwt.encode(
            {"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "aud": AUDIENCE, "iat": now, "exp": now + 3600},
            other_key,
            algorithm="RS256",
            headers={"kid": "key-1"},
        ),
        "hs256 with the public key": "Bearer "
        + base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"key-1"}').decode().rstrip("=")
        + ".e30.c2ln",
    }
    try:
        for name, header in refused.items():
            headers = {"Authorization": header} if header else {}
            status, body = await _post(runtime, [event], headers)
            assert status == 401, name
            assert "unauthorized" in body["error"]
        assert await stack.peek() == []
        assert len(tenant.jwks.seen) == 1, "forged tokens must not make us refetch the keys each time"
        # An unknown key id moments after a fetch may be a key rollover: 503, Event Grid retries (a 401 it would
        # dead-letter), and the keys are not fetched again.
        status, body = await _post(runtime, [event], {"Authorization": f"Bearer {tenant.token(kid='key-2')}"})
        assert status == 503 and len(tenant.jwks.seen) == 1
        status, body = await _post(runtime, [event], {"Authorization": f"Bearer {tenant.token()}"})
        assert (status, body["enqueued"]) == (200, 1)
        legacy_issuer = tenant.token(iss=f"https://sts.windows.net/{TENANT}/")
        status, _ = await _post(runtime, [event], {"Authorization": f"Bearer {legacy_issuer}"})
        assert status == 200
    finally:
        await runtime.close()


# --- secret hygiene ---------------------------------------------------------------


async def test_no_secret_reaches_the_logs(stack: Stack, caplog: pytest.LogCaptureFixture, blob_service: Any) -> None:
    caplog.set_level(logging.DEBUG)
    sim = stack.simulator
    sas = "sv=2024-01-01&sig=Zm9yZ2VkU0FTc2lnbmF0dXJlVmFsdWU%3D&se=2030-01-01"
    runtime = await stack.runtime()
    try:
        chunk = sim.add("doc-secrets", 2 * MIB, call_id=CALL)
        event = sim.event(CALL, "recS", [chunk])
        for field_name in URL_FIELDS:
            entry = event["data"]["recordingStorageInfo"]["recordingChunks"][0]
            entry[field_name] = f"{entry[field_name]}?{sas}"
        sim.faults += [Fault(kind="metadata", status=503, times=2), Fault(kind="media", action="reset", body_bytes=MIB)]
        real_key = sim.access_key
        sim.access_key = base64.b64encode(b"rotated key the app does not know").decode()
        assert (await _post(runtime, [event]))[0] == 200
        [message] = await stack.receive()
        with pytest.raises(Exception, match="refused our credentials") as refused:
            await handle_chunk_message(str(message.content), 1, runtime.worker)
        sim.access_key = real_key
        await handle_chunk_message(str(message.content), 2, runtime.worker)
        assert "doc-secrets" in sim.deleted
    finally:
        await runtime.close()
    container = blob_service.get_container_client(stack.container)
    [custody] = [n async for n in container.list_blob_names() if n.endswith(".custody.json")]
    evidence = [(await (await container.get_blob_client(custody).download_blob()).readall()).decode()]
    evidence.append(json.dumps(await stack.manifest(CALL, "r-recS")))
    text = "\n".join([r.getMessage() for r in caplog.records] + [caplog.text, str(refused.value), *evidence])
    assert "/doc-secrets/content/" in evidence[0]  # the custody record names the source, without its query
    assert "recording chunk archived" in text  # the capture really saw the worker
    settings = stack.settings()
    secrets = {
        "ACS access key": settings.acs.credentials.access_key,
        "rotated key": sim.access_key,
        "webhook key": stack.env["WEBHOOK_KEY"],
        "SAS signature": "Zm9yZ2VkU0FTc2lnbmF0dXJlVmFsdWU",
        "SAS query": "sig=",
        "HMAC signature": "Signature=",
        "Azurite account key": "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq",
    }
    leaked = [name for name, secret in secrets.items() if secret and secret in text]
    assert leaked == []
    key = settings.acs.credentials.access_key
    assert key is not None and key not in repr(settings) and stack.env["WEBHOOK_KEY"] not in repr(settings)


async def test_entra_keys_unknown_or_unreachable(stack: Stack, tenant: Tenant) -> None:
    sim = stack.simulator
    event = sim.event(CALL, "recK", [sim.add("doc-keys", MIB, call_id=CALL)])
    # A freshly fetched key set that lacks the key id: the token is refused for good.
    runtime = await stack.runtime(
        WEBHOOK_ENTRA_TENANT_ID=TENANT,
        WEBHOOK_ENTRA_AUDIENCE=AUDIENCE,
        WEBHOOK_ENTRA_JWKS_URL=f"{tenant.jwks.base_url}/keys",
    )
    try:
        status, _ = await _post(runtime, [event], {"Authorization": f"Bearer {tenant.token(kid='key-9')}"})
        assert status == 401 and len(tenant.jwks.seen) == 1
    finally:
        await runtime.close()
    # Keys that cannot be fetched are our problem, not the sender's: 503, nothing enqueued.
    runtime = await stack.runtime(
        WEBHOOK_ENTRA_TENANT_ID=TENANT,
        WEBHOOK_ENTRA_AUDIENCE=AUDIENCE,
        WEBHOOK_ENTRA_JWKS_URL="http://127.0.0.1:9/unreachable",
    )
    try:
        status, body = await _post(runtime, [event], {"Authorization": f"Bearer {tenant.token()}"})
        assert status == 503 and "cannot check" in body["error"]
        assert await stack.peek() == []
    finally:
        await runtime.close()
