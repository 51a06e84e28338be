"""Feed stored payloads through the webhook path again, or re-drive poison jobs.

Accepts what an operator actually has at hand: an Event Grid dead-letter blob
(a JSON array of events with extra dead-letter fields), a saved delivery in
either schema (array or single event), or JSON lines.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chunk_queue import ChunkQueue
from .jobs import decode_job
from .runtime import Runtime
from .webhook import WebhookRequest, handle_delivery

log = logging.getLogger(__name__)


@dataclass
class ReplaySummary:
    files: int = 0
    enqueued: int = 0
    ignored: int = 0
    external: int = 0
    rejected: list[str] = field(default_factory=list)
    failed_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_files


def load_payload(path: Path) -> tuple[bytes, str]:
    """The file as one delivery body and its content type."""
    text = path.read_text(encoding="utf-8").strip()
    try:
        payload: Any = json.loads(text)
    except ValueError:
        payload = [json.loads(line) for line in text.splitlines() if line.strip()]
    events = payload if isinstance(payload, list) else [payload]
    cloud = bool(events) and isinstance(events[0], dict) and "specversion" in events[0]
    content_type = "application/cloudevents-batch+json" if cloud else "application/json"
    return json.dumps(events).encode(), content_type


async def replay_files(
    runtime: Runtime, paths: list[Path], progress: Callable[[int, int, str], None] | None = None
) -> ReplaySummary:
    summary = ReplaySummary()
    for number, path in enumerate(paths, 1):
        summary.files += 1
        try:
            body, content_type = load_payload(path)
        except (OSError, ValueError) as exc:
            summary.failed_files.append(f"{path}: cannot read: {exc}")
            continue
        request = WebhookRequest("POST", {"content-type": content_type}, body)
        config = runtime.webhook
        response = await handle_delivery(request, _unlimited(config), runtime.queue, runtime.audit)
        result = response.body or {}
        summary.enqueued += int(result.get("enqueued", 0))
        summary.ignored += int(result.get("ignored", 0))
        summary.external += int(result.get("external", 0))
        summary.rejected.extend(f"{path}: {r}" for r in result.get("rejected", []))
        if response.status >= 500 or (response.status >= 400 and not result.get("rejected")):
            summary.failed_files.append(f"{path}: {response.status} {result.get('error', '')}")
        if progress:
            progress(number, len(paths), str(path))
    return summary


def _unlimited(config: Any) -> Any:
    """An operator's file is not bound by the webhook's per-request limits, nor does it carry a token."""
    from dataclasses import replace

    return replace(config, max_body_bytes=1 << 40, max_events=1 << 30, delivery_auth=None)


async def replay_poison(queue: ChunkQueue, limit: int = 10_000) -> tuple[int, int]:
    """Move quarantined jobs back onto the chunk queue. Returns (re-driven, unreadable kept)."""
    redriven = kept = 0
    seen = 0
    while seen < limit:
        batch = [m async for m in queue.poison.receive_messages(max_messages=32, visibility_timeout=300)]
        if not batch:
            break
        for message in batch:
            seen += 1
            job_text = _job_text(str(message.content))
            if job_text is None:
                kept += 1
                log.warning("poison message %s is not a job; left in place", message.id)
                continue
            await queue.jobs.send_message(job_text)
            await queue.poison.delete_message(message)
            redriven += 1
    return redriven, kept


def _job_text(content: str) -> str | None:
    """A poison message is either our envelope {job, error, attempts} or a bare job the host moved."""
    try:
        doc = json.loads(content)
    except ValueError:
        return None
    candidate = doc.get("job") if isinstance(doc, dict) and "error" in doc else doc
    if candidate is None and isinstance(doc, dict):
        candidate = doc.get("original")
    text = candidate if isinstance(candidate, str) else json.dumps(candidate)
    try:
        return decode_job(text).model_dump_json(exclude_none=True)
    except Exception:
        return None
