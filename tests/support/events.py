"""Recording events as the tests build them: a documented event with its chunks, parsed and planned."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from recording_pipeline.core.events import RecordingEvent, parse_recording_event, read_envelope
from recording_pipeline.core.jobs import RecordingChunk, plan_jobs
from recording_pipeline.core.settings import DEFAULT_ALLOWED_HOSTS
from recording_pipeline.core.urls import UrlPolicy

ACS_HOST = "acs-prod.communication.azure.com"
ACS_ENDPOINT = f"https://{ACS_HOST}"
POLICY = UrlPolicy(DEFAULT_ALLOWED_HOSTS, acs_endpoint_host=ACS_HOST)
CALL = "3f1c8f6e-52f4-4a55-9f0e-8a7c2d1b4e90"
SERVER = "aHR0cHM6Ly9hcGkuZmxpZ2h0cHJveHkuc2t5cGUuY29tL2FwaS92Mi9jcC9jb252LXVzd2UtMDEuY29udi5za3lwZS5jb20vY29udi8"
REC = "eyJQbGF0Zm9ybUVuZHBvaW50SWQiOiIyMjAwNWMwMC0zMzU0In0"
DOC = "0-eus-d12-801b3f3fc462fe8a01e6810cbff729b8"
EVENT_TIME = datetime(2024, 5, 14, 10, 33, 2, tzinfo=UTC)


def raw_event(
    subject: str = f"/recording/call/{CALL}/serverCallId/{SERVER}/recordingId/{REC}",
    chunks: list[dict[str, Any]] | None = None,
    **data: Any,
) -> dict[str, Any]:
    if chunks is None:
        chunks = [chunk(DOC, 0, "SessionEnded")]
    return {
        "id": "5b0c1e7a-77c4-4d84-a0a5-0f9d2e1c3b4a",
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/acs-prod",
        "subject": subject,
        "eventType": "Microsoft.Communication.RecordingFileStatusUpdated",
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": "2024-05-14T10:33:02Z",
        "data": {"recordingStorageInfo": {"recordingChunks": chunks}, "recordingDurationMs": 60000, **data},
    }


def chunk(document_id: str, index: int, end_reason: str | None = None, legacy: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"documentId": document_id, "index": index, "endReason": end_reason}
    if not legacy:
        out["contentLocation"] = f"https://storage.asm.skype.com/v1/objects/{document_id}/content/video"
        out["metadataLocation"] = f"https://storage.asm.skype.com/v1/objects/{document_id}/content/acsmetadata"
        out["deleteLocation"] = f"https://us-storage.asm.skype.com/v1/objects/{document_id}"
    return out


def to_event(raw: dict[str, Any]) -> RecordingEvent:
    return parse_recording_event(read_envelope(raw, "eventgrid"))


def plan(raw: dict[str, Any], retention: float = 24) -> list[RecordingChunk]:
    return plan_jobs(to_event(raw), ACS_ENDPOINT, retention, POLICY)
