"""The recording manifest: one JSON document per recording, the archive's own
account of every chunk (state, blobs, size, sha256, timings).

Pure functions over plain dicts; the store applies them under ETag conditions,
so they may run more than once and must never move a chunk backwards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .jobs import RecordingChunk

SCHEMA = 1
# A chunk's state only moves up this ladder; a late duplicate cannot undo an archive.
_RANK = {"pending": 0, "failed": 1, "lost": 2, "archived": 3}


def chunk_key(index: int) -> str:
    return f"{index:05d}"


def new_manifest(job: RecordingChunk, now: datetime) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "callId": job.call_id,
        "recordingId": job.recording_id,
        "serverCallId": job.server_call_id,
        "recordingKey": job.recording_key,
        "recordingStartTime": _iso(job.recording_start_time),
        "topic": job.topic,
        "storageType": "acsstorage",
        "state": "incomplete",
        "lastChunkIndex": None,
        "expiresAt": _iso(job.expires_at),
        "chunks": {},
        "createdAt": _iso(now),
        "updatedAt": _iso(now),
    }


def record_chunk(
    manifest: dict[str, Any] | None, job: RecordingChunk, now: datetime, state: str, **fields: Any
) -> dict[str, Any]:
    """Set one chunk's state and fields (never lowering its state) and recompute the recording's."""
    doc = manifest if manifest is not None else new_manifest(job, now)
    chunks: dict[str, Any] = doc.setdefault("chunks", {})
    entry = chunks.setdefault(
        chunk_key(job.chunk_index),
        {
            "index": job.chunk_index,
            "documentId": job.document_id,
            "state": "pending",
            "endReason": job.end_reason,
            "expiresAt": _iso(job.expires_at),
            "firstSeenAt": _iso(now),
        },
    )
    if _RANK[state] >= _RANK.get(entry.get("state", "pending"), 0):
        entry["state"] = state
        entry.update({k: v for k, v in fields.items() if v is not None})
    if job.is_last_chunk:
        doc["lastChunkIndex"] = job.chunk_index
    if job.expires_at and (doc.get("expiresAt") is None or job.expires_at < datetime.fromisoformat(doc["expiresAt"])):
        doc["expiresAt"] = _iso(job.expires_at)
    doc["state"] = recording_state(doc)
    doc["updatedAt"] = _iso(now)
    return doc


def external_manifest(job_like: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A bring-your-own-storage recording: ACS wrote it to the customer's container already."""
    return {
        "schema": SCHEMA,
        **job_like,
        "storageType": "blobstorage",
        "state": "external",
        "chunks": {},
        "createdAt": _iso(now),
        "updatedAt": _iso(now),
    }


def recording_state(doc: dict[str, Any]) -> str:
    if doc.get("storageType") == "blobstorage":
        return "external"
    chunks = doc.get("chunks", {})
    if any(c.get("state") == "lost" for c in chunks.values()):
        return "lost"
    last = doc.get("lastChunkIndex")
    if last is not None and all(chunks.get(chunk_key(i), {}).get("state") == "archived" for i in range(last + 1)):
        return "complete"
    return "incomplete"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
