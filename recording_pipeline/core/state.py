"""The one model of a recording's state: chunk and recording states, and the manifest.

The worker writes it (``record_chunk``, applied by the state store under ETag
conditions, so it may run more than once and must never move a chunk
backwards); every operator command reads it. No state string is spelled
anywhere else. The JSON keeps the manifest's camelCase field names, and
reading tolerates fields it does not know, so older and newer manifests both
parse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

SCHEMA = 1

Instant = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")]


class ChunkState(StrEnum):
    PENDING = "pending"  # seen, not archived yet (possibly waiting to be tried again)
    FAILED = "failed"  # quarantined: waits for an operator and ``replay --poison``
    LOST = "lost"  # ACS no longer had it, and no verified copy exists
    ARCHIVED = "archived"  # verified copy in the archive

    @property
    def rank(self) -> int:
        """A chunk's state only moves up this ladder; a late duplicate cannot undo an archive."""
        return _RANK[self]


_RANK = {ChunkState.PENDING: 0, ChunkState.FAILED: 1, ChunkState.LOST: 2, ChunkState.ARCHIVED: 3}


class RecordingState(StrEnum):
    INCOMPLETE = "incomplete"
    COMPLETE = "complete"  # chunks 0..n archived, and chunk n ended the session
    LOST = "lost"  # a chunk is lost
    EXTERNAL = "external"  # bring-your-own-storage: ACS wrote it to the customer's container itself


class StorageType(StrEnum):
    ACS = "acsstorage"
    BLOB = "blobstorage"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", alias_generator=to_camel)


class ChunkEntry(_Model):
    index: int
    document_id: str | None = None
    state: ChunkState = ChunkState.PENDING
    end_reason: str | None = None
    expires_at: Instant | None = None
    first_seen_at: Instant | None = None
    media_blob: str | None = None
    metadata_blob: str | None = None
    content_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    archived_at: Instant | None = None
    seconds_left_at_archive: int | None = None
    transfer_seconds: float | None = None
    resumed_from_byte: int | None = None
    source_deleted_at: Instant | None = None
    source_kept_reason: str | None = None
    lost_at: Instant | None = None
    failed_at: Instant | None = None
    last_error: str | None = None
    requeues: int | None = None


class Manifest(_Model):
    schema_version: int = Field(default=SCHEMA, alias="schema")
    event_id: str | None = None
    call_id: str
    recording_id: str | None = None
    server_call_id: str | None = None
    recording_key: str
    recording_start_time: Instant | None = None
    topic: str | None = None
    storage_type: StorageType = StorageType.ACS
    state: RecordingState = RecordingState.INCOMPLETE
    last_chunk_index: int | None = None
    expires_at: Instant | None = None
    chunks: dict[str, ChunkEntry] = Field(default_factory=dict)
    created_at: Instant | None = None
    updated_at: Instant | None = None

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        """A stored manifest; raises pydantic's ValidationError if it is not one."""
        return cls.model_validate(doc)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def chunk(self, index: int) -> ChunkEntry | None:
        return self.chunks.get(chunk_key(index))

    @property
    def total_chunks(self) -> int | None:
        """Known once the chunk that ended the session has been seen."""
        return None if self.last_chunk_index is None else self.last_chunk_index + 1

    def missing_chunks(self) -> tuple[int, ...]:
        """Indexes up to the last known one without an archived copy."""
        known = [c.index for c in self.chunks.values()]
        upper = self.total_chunks if self.total_chunks is not None else (max(known) + 1 if known else 0)
        return tuple(i for i in range(upper) if _state_of(self.chunk(i)) is not ChunkState.ARCHIVED)

    def count(self, state: ChunkState) -> int:
        return sum(1 for c in self.chunks.values() if c.state is state)

    @property
    def archived_bytes(self) -> int:
        return sum(c.size or 0 for c in self.chunks.values() if c.state is ChunkState.ARCHIVED)


@dataclass(frozen=True)
class ChunkUpdate:
    """What a step learned about a chunk. Fields left None leave the entry as it is."""

    state: ChunkState
    media_blob: str | None = None
    metadata_blob: str | None = None
    content_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    archived_at: datetime | None = None
    seconds_left_at_archive: int | None = None
    transfer_seconds: float | None = None
    resumed_from_byte: int | None = None
    source_deleted_at: datetime | None = None
    source_kept_reason: str | None = None
    lost_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None
    requeues: int | None = None


class ChunkOf(Protocol):
    """Who a chunk is: a RecordingChunk job, or the identity its chain-of-custody record keeps."""

    call_id: str
    recording_id: str | None
    server_call_id: str | None
    recording_key: str
    recording_start_time: datetime | None
    topic: str | None
    chunk_index: int
    document_id: str
    end_reason: str | None
    expires_at: datetime

    @property
    def is_last_chunk(self) -> bool: ...


def chunk_key(index: int) -> str:
    return f"{index:05d}"


def new_manifest(job: ChunkOf, now: datetime) -> Manifest:
    return Manifest(
        call_id=job.call_id,
        recording_id=job.recording_id,
        server_call_id=job.server_call_id,
        recording_key=job.recording_key,
        recording_start_time=job.recording_start_time,
        topic=job.topic,
        expires_at=job.expires_at,
        created_at=now,
        updated_at=now,
    )


def record_chunk(manifest: Manifest | None, job: ChunkOf, now: datetime, update: ChunkUpdate) -> Manifest:
    """Set one chunk's state and fields (never lowering its state) and recompute the recording's."""
    doc = manifest.model_copy(deep=True) if manifest is not None else new_manifest(job, now)
    key = chunk_key(job.chunk_index)
    entry = doc.chunks.get(key) or ChunkEntry(
        index=job.chunk_index,
        document_id=job.document_id,
        end_reason=job.end_reason,
        expires_at=job.expires_at,
        first_seen_at=now,
    )
    if update.state.rank >= entry.state.rank:
        changes = {k: v for k, v in asdict(update).items() if v is not None}
        entry = entry.model_copy(update=changes)
    doc.chunks[key] = entry
    if job.is_last_chunk:
        doc.last_chunk_index = job.chunk_index
    if doc.expires_at is None or job.expires_at < doc.expires_at:
        doc.expires_at = job.expires_at
    doc.state = recording_state(doc)
    doc.updated_at = now
    return doc


def recording_state(doc: Manifest) -> RecordingState:
    if doc.storage_type is StorageType.BLOB:
        return RecordingState.EXTERNAL
    if any(c.state is ChunkState.LOST for c in doc.chunks.values()):
        return RecordingState.LOST
    last = doc.last_chunk_index
    if last is not None and all(_state_of(doc.chunk(i)) is ChunkState.ARCHIVED for i in range(last + 1)):
        return RecordingState.COMPLETE
    return RecordingState.INCOMPLETE


def _state_of(entry: ChunkEntry | None) -> ChunkState:
    return entry.state if entry is not None else ChunkState.PENDING
