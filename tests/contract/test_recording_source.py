"""The RecordingSource contract, asserted alike of the in-memory fake and of AcsRecordingClient on the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from devtools.simulator import Fault, RecordingSimulator, SimRecording
from recording_pipeline.core.errors import RecordingGoneError
from recording_pipeline.core.ports import RecordingSource
from recording_pipeline.core.settings import parse_acs_connection_string
from recording_pipeline.core.urls import UrlPolicy
from recording_pipeline.edges.acs import AcsRecordingClient
from recording_pipeline.edges.retry import RetryPolicy
from tests.support.fakes import FakeAcs, FakeRecording

SIZE = 700_000


@dataclass
class Subject:
    source: RecordingSource
    urls: dict[str, str]
    media: bytes
    metadata: bytes
    gone_urls: dict[str, str]
    fail_metadata_once: object
    slow_deletes: object = None  # makes each DELETE take a while before it is honoured, where that can be done


@pytest.fixture(params=["fake", "simulator"])
async def subject(request: pytest.FixtureRequest, simulator: RecordingSimulator) -> AsyncIterator[Subject]:
    if request.param == "fake":
        fake = FakeAcs()
        media, metadata = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256), b'{"chunkDocumentId": "doc-1"}'
        fake.recordings["doc-1"] = FakeRecording(media, metadata)
        base = "https://x.asm.skype.com/v1/objects"
        urls = {
            "contentLocation": f"{base}/doc-1/content/video",
            "metadataLocation": f"{base}/doc-1/content/acsmetadata",
            "deleteLocation": f"{base}/doc-1",
        }
        gone = {k: v.replace("doc-1", "doc-9") for k, v in urls.items()}

        def fail_once() -> None:
            fake.fail_next_metadata = 1

        yield Subject(fake, urls, media, metadata, gone, fail_once)
        return
    sim = simulator
    recording = sim.add("doc-1", SIZE)
    missing = sim.add("doc-9", 10)
    gone = sim.chunk_urls(missing)
    del sim.recordings["doc-9"]
    async with aiohttp.ClientSession() as session:
        client = AcsRecordingClient(
            session,
            parse_acs_connection_string(sim.connection_string),
            UrlPolicy(("127.0.0.1",), allow_http=True),
            retry=RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.001),
        )
        media = b"".join([p async for p in _all(client, sim.chunk_urls(recording)["contentLocation"])])

        def fail_once() -> None:
            sim.faults.append(Fault(kind="metadata", status=503))

        async def slow_hook(_recording: SimRecording) -> None:
            await asyncio.sleep(0.2)

        def slow_deletes() -> None:
            sim.on_delete = slow_hook

        yield Subject(client, sim.chunk_urls(recording), media, recording.metadata(), gone, fail_once, slow_deletes)
        sim.on_delete = None


async def _all(source: RecordingSource, url: str) -> AsyncIterator[bytes]:
    async with source.open_media(url) as stream:
        async for piece in stream.pieces():
            yield piece


async def test_metadata_is_served_whole_even_after_a_transient_error(subject: Subject) -> None:
    assert await subject.source.fetch_metadata(subject.urls["metadataLocation"]) == subject.metadata
    subject.fail_metadata_once()  # type: ignore[operator]
    assert await subject.source.fetch_metadata(subject.urls["metadataLocation"]) == subject.metadata


async def test_media_from_the_start_states_its_size(subject: Subject) -> None:
    async with subject.source.open_media(subject.urls["contentLocation"]) as stream:
        assert (stream.start, stream.total) == (0, SIZE)
        body = b"".join([piece async for piece in stream.pieces()])
    assert len(body) == SIZE and body == subject.media


async def test_media_from_an_offset_starts_there(subject: Subject) -> None:
    async with subject.source.open_media(subject.urls["contentLocation"], 65536) as stream:
        assert (stream.start, stream.total) == (65536, SIZE)
        body = b"".join([piece async for piece in stream.pieces()])
    assert body == subject.media[65536:]


async def test_delete_once_then_already_gone(subject: Subject) -> None:
    assert await subject.source.delete(subject.urls["deleteLocation"]) is True
    assert await subject.source.delete(subject.urls["deleteLocation"]) is False


async def test_of_two_deletes_at_once_one_is_honoured(subject: Subject) -> None:
    if subject.slow_deletes is not None:
        subject.slow_deletes()  # type: ignore[operator]
    url = subject.urls["deleteLocation"]
    answers = await asyncio.gather(subject.source.delete(url), subject.source.delete(url))
    assert sorted(answers) == [False, True]


async def test_a_file_acs_no_longer_has_is_gone(subject: Subject) -> None:
    with pytest.raises(RecordingGoneError):
        await subject.source.fetch_metadata(subject.gone_urls["metadataLocation"])
    with pytest.raises(RecordingGoneError):
        async with subject.source.open_media(subject.gone_urls["contentLocation"]):
            pass


async def test_media_from_its_very_end_is_an_empty_remainder(subject: Subject) -> None:
    """An earlier attempt staged every block but did not commit (its time ran out in between): the resume asks for
    the bytes from the file's end. ACS's storage answers 416 with ``Content-Range: bytes */SIZE``; that is the end of
    the file, not an error, or the chunk could never be committed."""
    async with subject.source.open_media(subject.urls["contentLocation"], SIZE) as stream:
        assert (stream.start, stream.total) == (SIZE, SIZE)
        assert [piece async for piece in stream.pieces()] == []
