"""The evidence written once beside each archived chunk: its chain of custody, and when ACS's copy went.

The custody record is the proof that the archived media is the file ACS
served: what the event said, what ACS declared about the file, when its bytes
arrived, and the size, sha256 and block list of the archived blob, checked
before the record was written. It is created once (If-None-Match: *) and never
changed; ACS's copy is deleted only after it exists. A second record, also
written once, says when that DELETE happened. Both carry the chunk's whole
identity, so the state container can be rebuilt from them alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from recording_pipeline.core.events import RecordingEvent
from recording_pipeline.core.jobs import RecordingChunk, checked_identity, ends_recording
from recording_pipeline.core.state import ChunkState, ChunkUpdate, Instant, Manifest, RecordingState, StorageType
from recording_pipeline.core.urls import source_url

SCHEMA = 1


class _Record(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", alias_generator=to_camel, frozen=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=1).encode()


class Verification(StrEnum):
    WHILE_STAGING = "sha256-while-staging"  # hashed in order as the blocks were staged, in the attempt that committed
    READ_BACK = "sha256-read-back"  # the archived blob read back and hashed (a resumed copy)
    # A streamed Put Blob found committed: read back, and the file ACS serves hashed alike.
    READ_BACK_AND_SOURCE = "sha256-read-back-and-source"
    # The same, when ACS no longer had the file to compare with: the read-back alone, and said so.
    READ_BACK_SOURCE_GONE = "sha256-read-back-source-gone"


class ChunkIdentity(_Record):
    """Everything about a chunk that the event said, enough to rebuild the recording's state."""

    event_id: str
    event_time: Instant
    topic: str | None = None
    call_id: str
    server_call_id: str | None = None
    recording_id: str | None = None
    recording_key: str
    recording_start_time: Instant | None = None
    chunk_index: int
    document_id: str
    end_reason: str | None = None
    expires_at: Instant

    @classmethod
    def of(cls, job: RecordingChunk) -> ChunkIdentity:
        return cls(
            event_id=job.event_id,
            event_time=job.event_time,
            topic=job.topic,
            call_id=job.call_id,
            server_call_id=job.server_call_id,
            recording_id=job.recording_id,
            recording_key=job.recording_key,
            recording_start_time=job.recording_start_time,
            chunk_index=job.chunk_index,
            document_id=job.document_id,
            end_reason=job.end_reason,
            expires_at=job.expires_at,
        )

    @property
    def is_last_chunk(self) -> bool:
        return ends_recording(self.end_reason)


class DeclaredSource(_Record):
    """What ACS said about the file when it served it."""

    url: str  # without its query string
    content_length: int | None = None  # the whole file's size; None when ACS did not state it
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None


class ArchivedBlock(_Record):
    id: str
    size: int


class CustodyRecord(_Record):
    schema_version: int = Field(default=SCHEMA, alias="schema")
    kind: Literal["chain-of-custody"] = "chain-of-custody"
    chunk: ChunkIdentity
    source: DeclaredSource
    received_from: Instant | None = None  # the bytes of the attempt that committed arrived from …
    received_until: Instant | None = None  # … until; None when another attempt committed it
    resumed_from_byte: int = 0
    media_blob: str
    content_type: str
    size: int
    sha256: str
    blocks: list[ArchivedBlock]  # the committed block list; empty for a chunk of one block (one Put Blob)
    metadata_blob: str
    metadata_sha256: str
    verification: Verification
    verified_at: Instant
    app_version: str

    def archived_update(self, source_deleted_at: datetime | None, source_kept: bool) -> ChunkUpdate:
        """The chunk's state once this record exists: what the worker records, and what rebuild-state makes again
        from the archive alone. ``source_kept``: ACS's copy stays, its size never stated."""
        since, until = self.received_from, self.received_until
        return ChunkUpdate(
            ChunkState.ARCHIVED,
            media_blob=self.media_blob,
            metadata_blob=self.metadata_blob,
            content_type=self.content_type,
            size=self.size,
            sha256=self.sha256,
            archived_at=self.verified_at,
            seconds_left_at_archive=round((self.chunk.expires_at - self.verified_at).total_seconds()),
            transfer_seconds=round((until - since).total_seconds(), 3) if since and until else None,
            resumed_from_byte=self.resumed_from_byte or None,
            source_deleted_at=source_deleted_at,
            source_kept_reason="ACS did not state the file's size" if source_kept else None,
        )

    @property
    def source_proved_whole(self) -> bool:
        """ACS stated the size, and the archive holds exactly that many bytes: its copy may be deleted."""
        return self.source.content_length is not None and self.source.content_length == self.size


class CommittedBlock(Protocol):
    """A block of the committed blob, as the archive lists it."""

    @property
    def block_id(self) -> str: ...

    @property
    def size(self) -> int: ...


def custody_record(
    job: RecordingChunk,
    *,
    content_length: int | None,
    declared: Mapping[str, str],
    received_from: datetime | None,
    received_until: datetime | None,
    resumed_from_byte: int,
    media_blob: str,
    content_type: str,
    size: int,
    sha256: str,
    blocks: Iterable[CommittedBlock],
    metadata_blob: str,
    metadata_sha256: str,
    verification: Verification,
    verified_at: datetime,
    app_version: str,
) -> CustodyRecord:
    """The proof of one verified copy, from what the attempt checked. ``content_length``: the size ACS stated for
    the file (None if it stated none); ``declared``: ACS's answer's headers in the attempt that copied (empty when
    another attempt did); the source URL is kept without its query string, where credentials can live."""
    return CustodyRecord(
        chunk=ChunkIdentity.of(job),
        source=DeclaredSource(
            url=source_url(job.content_url),
            content_length=content_length,
            content_type=declared.get("Content-Type"),
            etag=declared.get("ETag"),
            last_modified=declared.get("Last-Modified"),
        ),
        received_from=received_from,
        received_until=received_until,
        resumed_from_byte=resumed_from_byte,
        media_blob=media_blob,
        content_type=content_type,
        size=size,
        sha256=sha256,
        blocks=[ArchivedBlock(id=b.block_id, size=b.size) for b in blocks],
        metadata_blob=metadata_blob,
        metadata_sha256=metadata_sha256,
        verification=verification,
        verified_at=verified_at,
        app_version=app_version,
    )


class SourceAnswer(StrEnum):
    DELETED = "deleted"
    ALREADY_GONE = "already-gone"  # a 404: an earlier attempt's DELETE, or ACS's own expiry


class SourceDeletedRecord(_Record):
    schema_version: int = Field(default=SCHEMA, alias="schema")
    kind: Literal["source-deleted"] = "source-deleted"
    chunk: ChunkIdentity
    delete_url: str  # without its query string
    answer: SourceAnswer
    deleted_at: Instant
    app_version: str


class ExternalRecord(_Record):
    """A bring-your-own-storage recording: ACS wrote its files to the customer's own container."""

    schema_version: int = Field(default=SCHEMA, alias="schema")
    kind: Literal["external"] = "external"
    event_id: str
    call_id: str
    recording_id: str | None = None
    server_call_id: str | None = None
    recording_key: str
    topic: str | None = None
    received_at: Instant

    @classmethod
    def of(cls, event: RecordingEvent, received: datetime) -> ExternalRecord:
        """The record of a bring-your-own-storage event; raises InvalidEventError if an id is unsafe as a name."""
        call_id, server_call_id, recording_id, rec_key = checked_identity(event)
        return cls(
            event_id=event.envelope.id,
            call_id=call_id,
            recording_id=recording_id,
            server_call_id=server_call_id,
            recording_key=rec_key,
            topic=event.envelope.topic,
            received_at=received,
        )

    def manifest(self) -> Manifest:
        """The recording's manifest: ACS wrote it to the customer's container already, so it is external."""
        return Manifest(
            event_id=self.event_id,
            call_id=self.call_id,
            recording_id=self.recording_id,
            server_call_id=self.server_call_id,
            recording_key=self.recording_key,
            topic=self.topic,
            storage_type=StorageType.BLOB,
            state=RecordingState.EXTERNAL,
            created_at=self.received_at,
            updated_at=self.received_at,
        )
