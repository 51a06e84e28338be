"""A worker on in-memory edges, and jobs for it: the world the unit tests of the app run in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from recording_pipeline.app.outbound import OutboundEvents
from recording_pipeline.app.worker import ChunkWorker
from recording_pipeline.core.attempts import AttemptPolicy
from recording_pipeline.core.custody import CustodyRecord
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.naming import custody_name, manifest_name, metadata_name
from recording_pipeline.core.state import Manifest
from tests.support.fakes import FakeAcs, FakeArchive, FakePublisher, FakeQueue, FakeRecording, _Blob

BLOCK = 64 * 1024
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
CALL = "cafe0000-0000-0000-0000-000000000000"
ARCHIVE_URL = "https://archive.blob.core.windows.net/recordings"


def job(
    doc: str = "doc-1",
    index: int = 0,
    last: bool = True,
    requeues: int = 0,
    delete: bool = True,
    call: str = CALL,
    recording: str = "rec1",
) -> RecordingChunk:
    base = f"https://x.asm.skype.com/v1/objects/{doc}"
    return RecordingChunk(
        event_id="evt-1",
        event_time=NOW,
        expires_at=NOW + timedelta(hours=24),
        call_id=call,
        recording_id=recording,
        recording_key=f"r-{recording}",
        chunk_index=index,
        document_id=doc,
        end_reason="SessionEnded" if last else "ChunkMaximumSizeExceeded",
        content_url=f"{base}/content/video",
        metadata_url=f"{base}/content/acsmetadata",
        delete_url=base if delete else None,
        requeues=requeues,
    )


def metadata(doc: str, participants: tuple[str, ...] = ("8:acs:a", "4:+1555")) -> bytes:
    return json.dumps(
        {
            "chunkDocumentId": doc,
            "recordingInfo": {"format": "mp4"},
            "participants": [{"participantId": p} for p in participants],
        }
    ).encode()


class World:
    def __init__(self) -> None:
        self.acs, self.queue = FakeAcs(), FakeQueue()
        self.archive = FakeArchive("recordings", clock=lambda: NOW)
        self.state = FakeArchive("recordings-state", clock=lambda: NOW)
        self.worker = ChunkWorker(
            acs=self.acs,
            archive=self.archive,
            state=self.state,
            queue=self.queue,
            block_size=BLOCK,
            concurrency=2,
            policy=AttemptPolicy(4, 300),
            clock=lambda: NOW,
        )

    def publish_events(self) -> FakePublisher:
        """Outbound events on, to an in-memory topic (as OUTBOUND_EVENTS_TOPIC_ENDPOINT turns them on)."""
        publisher = FakePublisher()
        self.worker.events = OutboundEvents(publisher, self.state, ARCHIVE_URL)
        return publisher

    def add(self, doc: str = "doc-1", size: int = 5 * BLOCK + 17, declare_size: bool = True) -> bytes:
        media = bytes((i * 7 + len(doc)) % 251 for i in range(size))
        self.acs.recordings[doc] = FakeRecording(media, metadata(doc), declare_size)
        return media

    def claimed_earlier(self, doc: str = "doc-1", ago: timedelta = timedelta(minutes=5), by: str = "") -> None:
        """An earlier attempt (of the queue message ``by``) created the chunk's metadata document, its claim."""
        name = metadata_name(job(doc).stem)
        claim = {"claimed_by": by} if by else {}
        self.archive.blobs[name] = _Blob(metadata(doc), "application/json", claim, created=NOW - ago)

    def manifest(self) -> Manifest:
        blob = self.state.blobs[manifest_name(CALL, "r-rec1")]
        return Manifest.from_json(json.loads(blob.data))

    def custody(self, doc: str = "doc-1", index: int = 0) -> CustodyRecord:
        return CustodyRecord.model_validate_json(self.archive.blobs[custody_name(job(doc, index).stem)].data)

    def media_blob(self, doc: str = "doc-1", index: int = 0) -> str:
        return f"{CALL}/r-rec1/{index:05d}-{doc}.mp4"
