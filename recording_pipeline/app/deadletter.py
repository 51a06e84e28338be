"""Event Grid's dead letters: each one found, reported, and redriven through the webhook's own path.

Event Grid writes what it gave up on (30 attempts within 24 hours, or at once when the webhook answered 400, 401,
403 or 413) to the dead-letter container, as a JSON array of the events, each with Event Grid's fields added
(``deadLetterReason``, ``deliveryAttempts``, ``lastDeliveryOutcome``, ``lastHttpStatusCode``, ``publishTime``).
Those events never reached the chunk queue. A blob is redriven as one delivery of its events through
``handle_delivery``, the webhook's path (planning, ``_rejected/``, enqueue), without the webhook's size limits or
its token: an event already enqueued or archived costs at most a duplicate job, which the worker finds done.

What became of a blob is written beside it, each record created once and never changed; Event Grid's blob itself
is never changed or deleted, so no dead-lettered event is lost:

- ``{blob}.redriven.json``: the webhook path's answer (status; jobs enqueued; external, ignored; the reasons of
  the events refused again, which are also kept in ``_rejected/``), when, and whether by the schedule or by
  ``replay``. A blob with this record is done: an event refused again is refused for a reason a redrive cannot
  change, so it is not tried again.
- ``{blob}.failed-{n}.json``: try ``n`` could not finish (the queue or the archive unavailable, the blob
  unreadable), with the error. The schedule tries a blob at most ``SCHEDULED_TRIES`` times, so a poisoned one
  never loops; it then waits, counted among the blobs waiting (the dead-letter alert), for ``replay
  --deadletter``, which tries every blob not done once more whatever its count.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from recording_pipeline.app.webhook import (
    AuditSink,
    JobSink,
    WebhookConfig,
    WebhookRequest,
    WebhookResponse,
    handle_delivery,
)
from recording_pipeline.core.errors import ContainerNotFoundError
from recording_pipeline.core.ports import DeadLetterStore

log = logging.getLogger(__name__)

JSON = "application/json"
REDRIVEN_SUFFIX = ".redriven.json"
_FAILED = re.compile(r"^(?P<blob>.+)\.failed-(?P<try>\d+)\.json$")
# Every 5 minutes (functions_adapter), so about an hour of an unavailable queue or archive; a refusal is final at once.
SCHEDULED_TRIES = 12
PER_RUN = 200  # blobs tried by one run; the rest wait for the next (each costs a read, the enqueue and a record)
BLOB_LIMIT = 64 * 1024 * 1024  # a dead-letter blob holds a few events of at most 1 MB each

Deliver = Callable[[WebhookRequest], Awaitable[WebhookResponse]]
By = Literal["schedule", "replay"]


@dataclass
class DeadLetter:
    """One blob Event Grid wrote, and what the records beside it say."""

    name: str
    tries: int = 0  # failed tries recorded
    done: bool = False  # a .redriven.json record exists


@dataclass
class DeadLetterReport:
    redriven: list[str] = field(default_factory=list)  # done now: every event enqueued, external or ignored
    refused: list[str] = field(default_factory=list)  # done now, with events refused again (kept in _rejected/)
    failed: list[str] = field(default_factory=list)  # tried and not finished: tried again later
    enqueued: int = 0
    rejected: list[str] = field(default_factory=list)  # the reasons of the events refused again
    waiting: int = 0  # blobs not done after this run: failed, out of scheduled tries, beyond this run, or not tried


def is_redrive_record(name: str) -> bool:
    """One of the records this module writes beside a blob (not something Event Grid wrote)."""
    return name.endswith(REDRIVEN_SUFFIX) or _FAILED.match(name) is not None


def as_delivery(text: str) -> tuple[bytes, str]:
    """A stored payload as one delivery body and its content type: a dead-letter blob (an array of events), a saved
    delivery in either schema (an array or one event), or JSON lines. Raises ValueError if it is none of these."""
    text = text.strip()
    try:
        payload: Any = json.loads(text)
    except ValueError:
        payload = [json.loads(line) for line in text.splitlines() if line.strip()]
    events = payload if isinstance(payload, list) else [payload]
    cloud = bool(events) and isinstance(events[0], dict) and "specversion" in events[0]
    content_type = "application/cloudevents-batch+json" if cloud else "application/json"
    return json.dumps(events).encode(), content_type


def webhook_path(config: WebhookConfig, jobs: JobSink, audit: AuditSink) -> Deliver:
    """The webhook's path for a stored payload, which is not bound by the webhook's per-request limits, nor carries
    Event Grid's token."""
    unlimited = replace(config, max_body_bytes=1 << 40, max_events=1 << 30, delivery_auth=None, write_seconds=None)

    async def deliver(request: WebhookRequest) -> WebhookResponse:
        return await handle_delivery(request, unlimited, jobs, audit)

    return deliver


async def dead_letters(store: DeadLetterStore) -> list[DeadLetter]:
    """Every blob Event Grid wrote, oldest first (its names begin with the topic, the subscription, then the date),
    with what the records beside it say. A container that does not exist holds none."""
    found: dict[str, DeadLetter] = {}
    records: list[str] = []
    try:
        async for name in store.list_names(""):
            if is_redrive_record(name):
                records.append(name)
            else:
                found[name] = DeadLetter(name)
    except ContainerNotFoundError:
        return []
    for name in records:
        failed = _FAILED.match(name)
        blob = found.get(name.removesuffix(REDRIVEN_SUFFIX) if failed is None else failed["blob"])
        if blob is None:
            continue  # a record whose blob someone removed by hand: nothing to redrive
        if failed is None:
            blob.done = True
        else:
            blob.tries = max(blob.tries, int(failed["try"]))
    return sorted(found.values(), key=lambda d: d.name)


async def redrive_dead_letters(
    store: DeadLetterStore, deliver: Deliver, by: By, redrive: bool = True, limit: int = PER_RUN
) -> DeadLetterReport:
    """Redrive every blob not done yet (``redrive`` False: only count them). The schedule leaves a blob alone after
    SCHEDULED_TRIES failed tries; ``replay`` tries it once more."""
    report = DeadLetterReport()
    pending = [d for d in await dead_letters(store) if not d.done]
    tried = 0
    for letter in pending:
        if not redrive or tried >= limit or (by == "schedule" and letter.tries >= SCHEDULED_TRIES):
            continue
        tried += 1
        await _redrive(store, letter, deliver, by, report)
    report.waiting = len(pending) - len(report.redriven) - len(report.refused)
    return report


async def _redrive(
    store: DeadLetterStore, letter: DeadLetter, deliver: Deliver, by: By, report: DeadLetterReport
) -> None:
    attempt = letter.tries + 1
    try:
        found = await store.read_bytes(letter.name, BLOB_LIMIT)
        if found is None:
            return  # gone since the listing (removed by hand): nothing to do
        if letter.tries == 0:
            reason = _reason(found[0])
            log.error(
                "dead-lettered event found: %s (%s)",
                letter.name,
                reason,
                extra={**_fields(letter.name), "deadletter_reason": reason},
            )
        response = await deliver(_request(found[0]))
    except Exception as exc:  # recorded as a try; the blob stays, and is tried again (or left to replay)
        await _failed(store, letter, attempt, f"{type(exc).__name__}: {exc}", by, report)
        return
    answer = response.body or {}
    if response.status >= 500:  # the queue or the archive could not be written: nothing is done yet
        await _failed(store, letter, attempt, f"answered {response.status}: {answer.get('error', '')}", by, report)
        return
    record = json.dumps(_record(letter.name, response, by, attempt), indent=1).encode()
    try:
        await store.create(f"{letter.name}{REDRIVEN_SUFFIX}", record, JSON)
    except Exception as exc:  # redriven, but not said so: the next run redrives it again (a duplicate, harmless)
        await _failed(store, letter, attempt, f"redriven, not recorded: {type(exc).__name__}: {exc}", by, report)
        return
    rejected = [str(r) for r in answer.get("rejected", [])]
    report.enqueued += int(answer.get("enqueued", 0))
    report.rejected.extend(rejected)
    if rejected or response.status != 200:
        report.refused.append(letter.name)
        reasons = "; ".join(rejected) or str(answer.get("error", ""))
        log.error("dead-lettered event refused again: %s: %s", letter.name, reasons, extra=_fields(letter.name))
    else:
        report.redriven.append(letter.name)
        log.info(
            "dead-lettered event redriven: %s: %d job(s) enqueued",
            letter.name,
            int(answer.get("enqueued", 0)),
            extra=_fields(letter.name),
        )


async def _failed(
    store: DeadLetterStore, letter: DeadLetter, attempt: int, error: str, by: By, report: DeadLetterReport
) -> None:
    report.failed.append(letter.name)
    record = {"blob": letter.name, "try": attempt, "error": error[:2000], "at": _now(), "by": by}
    try:
        await store.create(f"{letter.name}.failed-{attempt:02d}.json", json.dumps(record, indent=1).encode(), JSON)
    except Exception as exc:  # the container refused too: the try is not counted, and is made again next time
        log.warning("could not record a failed redrive of %s: %s: %s", letter.name, type(exc).__name__, exc)
    log.warning(
        "dead-lettered event redrive failed (try %d of %d): %s: %s",
        attempt,
        SCHEDULED_TRIES,
        letter.name,
        error,
        extra=_fields(letter.name),
    )
    if attempt == SCHEDULED_TRIES:
        log.error(
            "dead-lettered event not redriven after %d tries: %s; it waits for recording-archive replay --deadletter",
            attempt,
            letter.name,
            extra=_fields(letter.name),
        )


def _request(body: bytes) -> WebhookRequest:
    try:
        delivery, content_type = as_delivery(body.decode("utf-8"))
    except ValueError:  # not JSON: the webhook path refuses it with its reason, and it is done
        delivery, content_type = body, "application/json"
    return WebhookRequest("POST", {"content-type": content_type}, delivery)


def _reason(body: bytes) -> str:
    """Event Grid's ``deadLetterReason`` (and last HTTP status) of the blob's first event, for the log line."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "not JSON"
    events = payload if isinstance(payload, list) else [payload]
    first = events[0] if events and isinstance(events[0], dict) else {}
    reason = str(first.get("deadLetterReason") or "no deadLetterReason")[:100]
    status = first.get("lastHttpStatusCode")
    return f"{reason}, last HTTP status {status}" if status is not None else reason


def _record(name: str, response: WebhookResponse, by: By, attempt: int) -> dict[str, Any]:
    answer = response.body or {}
    return {
        "blob": name,
        "status": response.status,
        **{k: answer[k] for k in ("enqueued", "external", "ignored", "rejected", "error") if k in answer},
        "redrivenAt": _now(),
        "by": by,
        "try": attempt,
    }


def _fields(name: str) -> dict[str, str]:
    return {"deadletter_blob": name}


def _now() -> str:
    return datetime.now(UTC).isoformat()
