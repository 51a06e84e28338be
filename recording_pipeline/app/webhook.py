"""handle_delivery: one Event Grid POST (or OPTIONS) in, one response out.

No Functions or aiohttp types inside: ``function_app.py`` (under the Functions host, or the
local one) adapts its requests to WebhookRequest and back.

Status policy, knowing Event Grid retries 408/429/5xx and dead-letters 400/413:
- 200 once every job of every good event is durably on the queue and every bad
  event is durably kept in the archive's ``_rejected/`` area with its reason;
- 400 when the body is not an event array, or when *every* event in it was
  rejected (there is nothing to retry; the events are kept for audit);
- 413 over the size or event-count limits;
- 503 when the queue or the archive could not be written, or not within
  WRITE_SECONDS: Event Grid retries, and since jobs are idempotent a partial
  first attempt does no harm. Event Grid waits 30 s for an answer and treats
  silence as a failure; answering 503 before then says so at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from recording_pipeline.core.custody import ExternalRecord
from recording_pipeline.core.errors import DeliveryAuthError, DeliveryAuthUnavailable, InvalidEventError
from recording_pipeline.core.events import (
    RECORDING_EVENT_TYPE,
    VALIDATION_EVENT_TYPE,
    Envelope,
    parse_recording_event,
    read_envelope,
    split_body,
    validation_code,
)
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.planning import plan_event
from recording_pipeline.core.urls import UrlPolicy

log = logging.getLogger(__name__)

# What the webhook gives the queue and the archive to keep a delivery, within Event Grid's 30 s wait (the queue's
# own limits stay inside it: edges.client_limits).
WRITE_SECONDS = 25.0


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    headers: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass(frozen=True)
class WebhookResponse:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def json_bytes(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


class DeliveryAuthenticator(Protocol):
    async def check(self, authorization: str | None) -> dict[str, Any]: ...


class JobSink(Protocol):
    async def enqueue(self, jobs: list[RecordingChunk]) -> int: ...


class AuditSink(Protocol):
    async def keep_rejected(self, raw: Any, reason: str, received: datetime) -> None: ...
    async def record_external(self, evidence: ExternalRecord) -> None: ...


@dataclass(frozen=True)
class WebhookConfig:
    acs_endpoint: str
    retention_hours: float
    url_policy: UrlPolicy
    acs_resource_id: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    max_events: int = 1000
    delivery_auth: DeliveryAuthenticator | None = None
    write_seconds: float | None = WRITE_SECONDS  # None: no bound (a stored payload redriven, no one waiting)


async def handle_delivery(
    request: WebhookRequest, config: WebhookConfig, jobs: JobSink, audit: AuditSink
) -> WebhookResponse:
    method = request.method.upper()
    if method == "OPTIONS":
        return _abuse_protection(request)
    if method != "POST":
        return WebhookResponse(
            405, {"error": "use POST (events) or OPTIONS (CloudEvents handshake)"}, {"Allow": "POST, OPTIONS"}
        )
    if config.delivery_auth is not None:
        try:
            await config.delivery_auth.check(request.header("authorization"))
        except DeliveryAuthUnavailable as exc:
            log.error("could not check a delivery's token; Event Grid will retry: %s", exc)
            return WebhookResponse(503, {"error": f"cannot check the token now: {exc}"}, {"Retry-After": "60"})
        except DeliveryAuthError as exc:  # its message is safe to say; nothing else is
            log.warning("refused an unauthenticated delivery: %s", exc)
            return WebhookResponse(401, {"error": f"unauthorized: {exc}"}, {"WWW-Authenticate": "Bearer"})
    if len(request.body) > config.max_body_bytes:
        return _too_large(f"body larger than {config.max_body_bytes} bytes")
    try:
        raw_events, schema = split_body(request.body, request.header("content-type"))
    except InvalidEventError as exc:
        log.warning("rejected delivery: %s", exc)
        return WebhookResponse(400, {"error": str(exc)})
    if len(raw_events) > config.max_events:
        return _too_large(f"more than {config.max_events} events in one delivery")

    received = datetime.now(UTC)
    planned: list[RecordingChunk] = []
    rejected: list[tuple[Any, str]] = []
    external: list[ExternalRecord] = []
    ignored = 0
    for raw in raw_events:
        try:
            envelope = read_envelope(raw, schema)
            if envelope.type == VALIDATION_EVENT_TYPE:
                if len(raw_events) != 1:  # Event Grid sends it alone; answering it would drop the rest
                    raise InvalidEventError("a subscription validation event must be delivered alone")
                code = validation_code(envelope)
                log.info("answered the Event Grid subscription validation handshake")
                return WebhookResponse(200, {"validationResponse": code})
            _check_topic(envelope, config.acs_resource_id)
            if envelope.type != RECORDING_EVENT_TYPE:
                ignored += 1
                log.info("ignored event of type %s", envelope.type[:100])
                continue
            event = parse_recording_event(envelope, received)
            plan = plan_event(event, received, config.acs_endpoint, config.retention_hours, config.url_policy)
            if isinstance(plan, ExternalRecord):
                external.append(plan)
            else:
                planned.extend(plan)
        except InvalidEventError as exc:
            rejected.append((raw, str(exc)))

    try:
        async with asyncio.timeout(config.write_seconds):
            for raw, reason in rejected:
                # "rejected event" / "rejected delivery" lines raise the refused-event alert (infra/.../alerts.bicep)
                log.warning(
                    "rejected event %s: %s",
                    _event_id(raw),
                    reason,
                    extra={"rejected_event_id": _event_id(raw), "rejected_reason": reason[:500]},
                )
                await audit.keep_rejected(raw, reason, received)
            for evidence in external:
                await audit.record_external(evidence)
            enqueued = await jobs.enqueue(planned) if planned else 0
    except Exception as exc:
        problem = f"no answer within {config.write_seconds} s" if isinstance(exc, TimeoutError) else exc
        log.error("could not record the delivery durably; Event Grid will retry: %s: %s", type(exc).__name__, problem)
        return WebhookResponse(503, {"error": "the chunk queue or the archive is unavailable; retry later"})

    reasons = [reason for _raw, reason in rejected]
    if rejected and not planned and not external and not ignored:
        return WebhookResponse(400, {"error": "every event in the delivery was rejected", "rejected": reasons})
    if enqueued:
        log.info("enqueued %d chunk job(s) from %d event(s)", enqueued, len(raw_events))
    return WebhookResponse(
        200, {"enqueued": enqueued, "external": len(external), "ignored": ignored, "rejected": reasons}
    )


def _too_large(reason: str) -> WebhookResponse:
    """413: Event Grid dead-letters the delivery, and the dead-letter redrive takes it without the limits."""
    log.warning("rejected delivery: %s", reason)
    return WebhookResponse(413, {"error": reason})


def _abuse_protection(request: WebhookRequest) -> WebhookResponse:
    origin = request.header("webhook-request-origin")
    if not origin:
        return WebhookResponse(400, {"error": "OPTIONS needs a WebHook-Request-Origin header"})
    return WebhookResponse(
        200,
        None,
        {"WebHook-Allowed-Origin": origin.strip()[:255], "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"},
    )


def _check_topic(envelope: Envelope, resource_id: str | None) -> None:
    if resource_id is None:
        return
    topic = (envelope.topic or "").strip().rstrip("/").lower()
    if topic != resource_id.strip().rstrip("/").lower():
        raise InvalidEventError("event comes from another ACS resource than ACS_RESOURCE_ID")


def _event_id(raw: Any) -> str:
    value = raw.get("id") if isinstance(raw, dict) else None
    return str(value)[:100] if value is not None else "<no id>"
