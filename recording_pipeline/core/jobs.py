"""RecordingChunk: the unit of work, one per recording chunk — plan, encode, decode.

A job carries everything the worker needs (URLs, identity, deadline), so the
worker never has to see the event again. Jobs are JSON; the queue adapter is
responsible for the transport encoding the Functions host expects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.events import RecordingEvent
from recording_pipeline.core.naming import check_id, chunk_stem, recording_key
from recording_pipeline.core.urls import UrlPolicy

MAX_MESSAGE_BYTES = 48 * 1024  # a Storage queue message holds 64 KiB; base64 adds a third
FINAL_END_REASON = "sessionended"


def ends_recording(end_reason: str | None) -> bool:
    """Whether a chunk that ended for this reason is its recording's last (any reason but the session's end, or
    one we do not know, means more may follow)."""
    return (end_reason or "").strip().lower() == FINAL_END_REASON


class RecordingChunk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    event_id: str
    topic: str | None = None
    event_time: datetime
    expires_at: datetime
    call_id: str
    server_call_id: str | None = None
    recording_id: str | None = None
    recording_key: str
    recording_start_time: datetime | None = None
    recording_duration_ms: int | None = None
    chunk_index: int = Field(ge=0)
    document_id: str
    end_reason: str | None = None
    format_hint: str | None = None
    content_url: str
    metadata_url: str
    delete_url: str | None = None
    requeues: int = Field(default=0, ge=0)  # how often the job came back after all its queue attempts failed

    @model_validator(mode="after")
    def _safe(self) -> RecordingChunk:
        """Checked again on every decode: whoever can write the queue is trusted no more than the webhook."""
        check_id(self.call_id, "callId")
        check_id(self.document_id, "documentId")
        if self.server_call_id is not None:
            check_id(self.server_call_id, "serverCallId")
        if self.recording_id is not None:
            check_id(self.recording_id, "recordingId")
        if self.recording_key != recording_key(self.recording_id, self.server_call_id):
            raise InvalidEventError("recording_key does not follow from recordingId/serverCallId")
        for url, what in (
            (self.content_url, "contentLocation"),
            (self.metadata_url, "metadataLocation"),
            (self.delete_url, "deleteLocation"),
        ):
            if url is not None:
                require_document_in_url(url, self.document_id, what)
        return self

    @property
    def stem(self) -> str:
        return chunk_stem(self.call_id, self.recording_key, self.chunk_index, self.document_id)

    @property
    def is_last_chunk(self) -> bool:
        """The chunk that ends with the session is the recording's last.

        Any other reason (``ChunkMaximumSizeExceeded``, or one we do not know)
        means more may follow: a manifest stays incomplete rather than claiming
        a whole recording it cannot prove.
        """
        return ends_recording(self.end_reason)

    def seconds_left(self, now: datetime) -> float:
        return (self.expires_at - now).total_seconds()


def plan_jobs(
    event: RecordingEvent, acs_endpoint: str, retention_hours: float, url_policy: UrlPolicy
) -> list[RecordingChunk]:
    """One job per chunk to copy; bring-your-own-storage events (``blobstorage``) plan none. The webhook plans
    with core.planning.plan_event instead, which also says what to record of those."""
    return [] if is_external_storage(event) else chunk_jobs(event, acs_endpoint, retention_hours, url_policy)


def chunk_jobs(
    event: RecordingEvent, acs_endpoint: str, retention_hours: float, url_policy: UrlPolicy
) -> list[RecordingChunk]:
    """One job per chunk of an event whose files are in ACS's storage.

    Raises InvalidEventError if any id or URL is unsafe: the whole event is
    rejected rather than half-planned.
    """
    call_id, server_call_id, recording_id, rec_key = checked_identity(event)
    expires_at = event.deadline(retention_hours)
    chunks = event.data.chunks
    if not chunks:
        raise InvalidEventError(
            f"event {event.envelope.id[:100]}: no recordingStorageInfo.recordingChunks, and storageType is not "
            "blobstorage: nothing says where the recording is"
        )
    jobs = []
    for chunk in chunks:
        document_id = check_id(chunk.document_id, "documentId")
        content, metadata, delete = _chunk_urls(
            chunk.content_location, chunk.metadata_location, chunk.delete_location, acs_endpoint, document_id
        )
        for url, what in ((content, "contentLocation"), (metadata, "metadataLocation"), (delete, "deleteLocation")):
            if url is not None:
                url_policy.check(url, what)
        jobs.append(
            RecordingChunk(
                event_id=event.envelope.id,
                topic=event.envelope.topic,
                event_time=event.event_time,
                expires_at=expires_at,
                call_id=call_id,
                server_call_id=server_call_id,
                recording_id=recording_id,
                recording_key=rec_key,
                recording_start_time=event.data.recording_start_time,
                recording_duration_ms=event.data.recording_duration_ms,
                chunk_index=chunk.index,
                document_id=document_id,
                end_reason=chunk.end_reason,
                format_hint=event.data.recording_format_type,
                content_url=content,
                metadata_url=metadata,
                delete_url=delete,
            )
        )
    return jobs


def checked_identity(event: RecordingEvent) -> tuple[str, str | None, str | None, str]:
    """(callId, serverCallId, recordingId, recording key), each safe to use in a blob name."""
    identity = event.identity
    call_id = check_id(identity.call_id, "callId")
    server_call_id = check_id(identity.server_call_id, "serverCallId") if identity.server_call_id else None
    recording_id = check_id(identity.recording_id, "recordingId") if identity.recording_id else None
    return call_id, server_call_id, recording_id, recording_key(recording_id, server_call_id)


def is_external_storage(event: RecordingEvent) -> bool:
    """ACS already wrote the files to the customer's own container: nothing to copy."""
    return (event.data.storage_type or "").strip().lower() == "blobstorage"


def require_document_in_url(url: str, document_id: str, what: str) -> None:
    """A chunk's URLs must name that chunk: a forged deleteLocation must not point at another recording."""
    path = urlsplit(url).path
    if document_id not in path.split("/"):
        raise InvalidEventError(f"{what} does not name chunk {document_id}")


def _chunk_urls(
    content: str | None, metadata: str | None, delete: str | None, acs_endpoint: str, document_id: str
) -> tuple[str, str, str | None]:
    if content or metadata:
        if not (content and metadata):
            raise InvalidEventError(f"chunk {document_id}: contentLocation and metadataLocation come together")
        return content, metadata, delete
    # The oldest events carry only documentId; the files then live on the ACS endpoint itself
    # and there is no delete location.
    base = f"{acs_endpoint.rstrip('/')}/recording/download/{document_id}"
    return base, f"{base}/metadata", None


def encode_job(job: RecordingChunk) -> str:
    text = job.model_dump_json(exclude_none=True)
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise InvalidEventError(f"job for chunk {job.document_id} is larger than a queue message can hold")
    return text


def decode_job(text: str | bytes) -> RecordingChunk:
    try:
        return RecordingChunk.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise InvalidEventError(f"queue message is not a RecordingChunk job: {where}: {first['msg']}") from None
