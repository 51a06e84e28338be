"""A downstream Azure Functions app that subscribes to the archive's outbound events (CloudEvents 1.0).

Deploy it as its own function app, then subscribe its function to the archive's
topic with the CloudEvents schema (README.md beside this file). Event Grid
delivers at least once and in no particular order: ``handle`` deduplicates on the
event's ``id``, which the archive derives from what the event is about, so a
redelivered or duplicated event has the id of the first. ``SeenIds`` keeps ids in
memory, which is enough to show the rule; a real subscriber keeps them where it
keeps its own results (for example as the key of the row it writes), so a
duplicate is a no-op across restarts and instances.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import azure.functions as func

app = func.FunctionApp()
log = logging.getLogger("recording_archive_subscriber")

CHUNK_ARCHIVED = "RecordingArchive.ChunkArchived"
RECORDING_COMPLETED = "RecordingArchive.RecordingCompleted"
CHUNK_LOST = "RecordingArchive.ChunkLost"
CHUNK_FAILED = "RecordingArchive.ChunkFailed"


class SeenIds:
    """The ids handled lately, oldest forgotten first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


SEEN = SeenIds()


def handle(event: func.CloudEvent, seen: SeenIds = SEEN) -> str | None:
    """What this subscriber does with one event; None for a duplicate or a type it does not know."""
    if not seen.first_time(event.id):
        return None
    body = event.get_json()
    data: dict[str, Any] = body if isinstance(body, dict) else {}
    if event.type == CHUNK_ARCHIVED:
        return (
            f"chunk {data['chunkIndex']} of {data['callId']}/{data['recordingKey']} archived: "
            f"{data['size']} bytes, sha256 {data['sha256']}, at {data['mediaUrl']}, "
            f"{data['secondsLeftAtArchive'] / 3600:.1f} h before ACS's deadline"
        )
    if event.type == RECORDING_COMPLETED:
        chunks, size = data["chunkCount"], data["size"]
        return f"recording {data['callId']}/{data['recordingKey']} complete: {chunks} chunks, {size} bytes"
    if event.type == CHUNK_LOST:
        return f"chunk {data['chunkIndex']} of {data['callId']}/{data['recordingKey']} LOST: {data['reason']}"
    if event.type == CHUNK_FAILED:
        return (
            f"chunk {data['chunkIndex']} of {data['callId']}/{data['recordingKey']} failed after "
            f"{data['attempts']} attempts, quarantined: {data['error']}"
        )
    return None


@app.event_grid_trigger(arg_name="event")
def on_recording_archive_event(event: func.CloudEvent) -> None:
    summary = handle(event)
    if summary is not None:
        log.info(summary)
