"""What one recording event asks of the archive: jobs that copy its chunks out of ACS's storage, or, when ACS
wrote the files to the customer's own container (bring-your-own-storage), a record that it did."""

from __future__ import annotations

from datetime import datetime

from recording_pipeline.core.custody import ExternalRecord
from recording_pipeline.core.events import RecordingEvent
from recording_pipeline.core.jobs import RecordingChunk, chunk_jobs, is_external_storage
from recording_pipeline.core.urls import UrlPolicy


def plan_event(
    event: RecordingEvent, received: datetime, acs_endpoint: str, retention_hours: float, url_policy: UrlPolicy
) -> list[RecordingChunk] | ExternalRecord:
    """The event's jobs, or its external record. Raises InvalidEventError if any id or URL is unsafe: the whole
    event is rejected rather than half-planned."""
    if is_external_storage(event):
        return ExternalRecord.of(event, received)
    return chunk_jobs(event, acs_endpoint, retention_hours, url_policy)
