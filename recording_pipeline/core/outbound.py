"""The events this app publishes for downstream systems: what a chunk or a recording became, as CloudEvents 1.0.

Delivery is at least once: an event may arrive twice (a retried publish, a
redelivery from the outbox, a chunk's message delivered again). Each event's id is
derived from what it is about (the chunk's or recording's identity, and for a
failure the attempts it took), never from when it was sent, so a duplicate has
the same id as the original and a subscriber deduplicates on ``id``. Nothing
here does I/O: the worker builds events from what its steps learned, an edge
publishes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from recording_pipeline.core.custody import CustodyRecord
from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.naming import custody_name, lost_name, manifest_name, quarantine_name, recording_prefix
from recording_pipeline.core.state import Manifest, RecordingState

SCHEMA = 1


class EventType(StrEnum):
    CHUNK_ARCHIVED = "RecordingArchive.ChunkArchived"
    RECORDING_COMPLETED = "RecordingArchive.RecordingCompleted"
    CHUNK_LOST = "RecordingArchive.ChunkLost"
    CHUNK_FAILED = "RecordingArchive.ChunkFailed"
    DEPLOYMENT_CHECK = "RecordingArchive.DeploymentCheck"  # recording-archive check's test event; about no chunk


@dataclass(frozen=True)
class OutboundEvent:
    """One CloudEvent: ``source`` is the archive container's URL, ``subject`` the blob path it is about."""

    id: str
    type: EventType
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]

    def to_json(self) -> bytes:
        """The event as kept in the outbox, to be published again unchanged."""
        doc = {
            "id": self.id,
            "type": self.type.value,
            "source": self.source,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "data": self.data,
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, body: bytes) -> OutboundEvent:
        """An event kept in the outbox; InvalidEventError if it is not one."""
        try:
            doc = json.loads(body)
            return cls(
                str(doc["id"]),
                EventType(doc["type"]),
                str(doc["source"]),
                str(doc["subject"]),
                datetime.fromisoformat(doc["time"]),
                dict(doc["data"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidEventError(f"not an outbound event: {type(exc).__name__}: {exc}") from None


def event_id(kind: EventType, *identity: object) -> str:
    """The same event always gets the same id: sha256 over its type and identity, 32 hex digits."""
    text = "\n".join([kind.value, *(str(part) for part in identity)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _url(container_url: str, name: str) -> str:
    return f"{container_url.rstrip('/')}/{name}"


def _chunk_identity(job: RecordingChunk) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "eventId": job.event_id,
        "callId": job.call_id,
        "serverCallId": job.server_call_id,
        "recordingId": job.recording_id,
        "recordingKey": job.recording_key,
        "chunkIndex": job.chunk_index,
        "documentId": job.document_id,
        "expiresAt": job.expires_at.isoformat(),
    }


def _chunk_key(job: RecordingChunk) -> tuple[str, str, int, str]:
    return (job.call_id, job.recording_key, job.chunk_index, job.document_id)


def chunk_archived(
    job: RecordingChunk, custody: CustodyRecord, archive_url: str, source_deleted_at: datetime | None
) -> OutboundEvent:
    """The chunk's media is in the archive, proved whole by its chain-of-custody record."""
    data = {
        **_chunk_identity(job),
        "mediaBlob": custody.media_blob,
        "mediaUrl": _url(archive_url, custody.media_blob),
        "metadataBlob": custody.metadata_blob,
        "metadataUrl": _url(archive_url, custody.metadata_blob),
        "custodyBlob": custody_name(job.stem),
        "custodyUrl": _url(archive_url, custody_name(job.stem)),
        "contentType": custody.content_type,
        "size": custody.size,
        "sha256": custody.sha256,
        "archivedAt": custody.verified_at.isoformat(),
        "secondsLeftAtArchive": round(job.seconds_left(custody.verified_at)),
        "sourceDeletedAt": source_deleted_at.isoformat() if source_deleted_at else None,
    }
    return OutboundEvent(
        event_id(EventType.CHUNK_ARCHIVED, *_chunk_key(job)),
        EventType.CHUNK_ARCHIVED,
        archive_url,
        custody.media_blob,
        custody.verified_at,
        data,
    )


def recording_completed(manifest: Manifest, archive_url: str) -> OutboundEvent:
    """Chunks 0..n are archived and chunk n ended the session. ``manifest`` must say ``complete``."""
    chunks = sorted(manifest.chunks.values(), key=lambda c: c.index)
    if manifest.state is not RecordingState.COMPLETE:
        raise InvalidEventError(f"{manifest_name(manifest.call_id, manifest.recording_key)} is not complete")
    archived_at = max((c.archived_at for c in chunks if c.archived_at), default=manifest.updated_at)
    assert archived_at is not None
    data = {
        "schema": SCHEMA,
        "callId": manifest.call_id,
        "serverCallId": manifest.server_call_id,
        "recordingId": manifest.recording_id,
        "recordingKey": manifest.recording_key,
        "recordingStartTime": manifest.recording_start_time.isoformat() if manifest.recording_start_time else None,
        "chunkCount": len(chunks),
        "size": sum(c.size or 0 for c in chunks),
        "completedAt": archived_at.isoformat(),
        "expiresAt": manifest.expires_at.isoformat() if manifest.expires_at else None,
        "chunks": [
            {
                "chunkIndex": c.index,
                "documentId": c.document_id,
                "mediaBlob": c.media_blob,
                "mediaUrl": _url(archive_url, c.media_blob) if c.media_blob else None,
                "size": c.size,
                "sha256": c.sha256,
                "archivedAt": c.archived_at.isoformat() if c.archived_at else None,
                "secondsLeftAtArchive": c.seconds_left_at_archive,
            }
            for c in chunks
        ],
    }
    documents = [c.document_id or "" for c in chunks]
    return OutboundEvent(
        event_id(EventType.RECORDING_COMPLETED, manifest.call_id, manifest.recording_key, *documents),
        EventType.RECORDING_COMPLETED,
        archive_url,
        recording_prefix(manifest.call_id, manifest.recording_key),
        archived_at,
        data,
    )


def chunk_lost(job: RecordingChunk, reason: str, detected_at: datetime, archive_url: str) -> OutboundEvent:
    """ACS no longer had the chunk and no copy was ever archived; a ``_lost/`` marker says so in the archive."""
    marker = lost_name(job.stem)
    data = {
        **_chunk_identity(job),
        "reason": reason,
        "detectedAt": detected_at.isoformat(),
        "lostBlob": marker,
        "lostUrl": _url(archive_url, marker),
    }
    return OutboundEvent(
        event_id(EventType.CHUNK_LOST, *_chunk_key(job)), EventType.CHUNK_LOST, archive_url, marker, detected_at, data
    )


def chunk_failed(
    job: RecordingChunk, error: str, attempts: int, quarantined_at: datetime, archive_url: str, poison_queue: str
) -> OutboundEvent:
    """Every attempt failed near the deadline: the job is quarantined, waiting for an operator."""
    data = {
        **_chunk_identity(job),
        "error": error,
        "attempts": attempts,
        "quarantinedAt": quarantined_at.isoformat(),
        "quarantineBlob": quarantine_name(job.stem),
        "poisonQueue": poison_queue,
    }
    return OutboundEvent(
        event_id(EventType.CHUNK_FAILED, *_chunk_key(job), attempts),
        EventType.CHUNK_FAILED,
        archive_url,
        job.stem,
        quarantined_at,
        data,
    )
