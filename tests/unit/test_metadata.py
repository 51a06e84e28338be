"""ACS's metadata document: parsed, checked against its chunk, and read for format and participants."""

from __future__ import annotations

import hashlib
import json

import pytest

from recording_pipeline.core.errors import AcsTransientError, InvalidEventError
from recording_pipeline.core.metadata import MAX_PARTICIPANTS, parse_metadata


def doc(**fields: object) -> bytes:
    return json.dumps({"chunkDocumentId": "doc-1", **fields}).encode()


def test_format_and_participants_are_read() -> None:
    body = doc(recordingInfo={"format": "mp3"}, participants=[{"participantId": "a"}, {"participantId": "b"}])
    metadata = parse_metadata(body, "doc-1")
    assert (metadata.format, metadata.participants) == ("mp3", ["a", "b"])
    assert metadata.sha256 == hashlib.sha256(body).hexdigest() and metadata.body == body


@pytest.mark.parametrize("body", [b"", b"<html>", b"{", "café".encode("latin-1")])
def test_not_json_is_transient_acs_serves_it_half_ready(body: bytes) -> None:
    with pytest.raises(AcsTransientError, match="not JSON"):
        parse_metadata(body)


@pytest.mark.parametrize("body", [b"[]", b"3", b'"text"', b"null"])
def test_json_that_is_not_an_object_is_transient(body: bytes) -> None:
    with pytest.raises(AcsTransientError, match="not a JSON object"):
        parse_metadata(body)


def test_a_document_that_names_another_chunk_is_refused_for_good() -> None:
    with pytest.raises(InvalidEventError, match="describes chunk other"):
        parse_metadata(doc(chunkDocumentId="other"), "doc-1")
    assert parse_metadata(doc(chunkDocumentId="other")).document["chunkDocumentId"] == "other"  # archived: as is


@pytest.mark.parametrize(
    "participants",
    [None, "x", [1, None, {"participantId": 3}, {"participantId": ""}, {"id": "a"}], []],
)
def test_odd_participant_lists_give_no_ids(participants: object) -> None:
    assert parse_metadata(doc(participants=participants)).participants == []


def test_participants_are_distinct_and_bounded() -> None:
    many = [{"participantId": f"p{i % (MAX_PARTICIPANTS + 50)}"} for i in range(5 * MAX_PARTICIPANTS)]
    ids = parse_metadata(doc(participants=many)).participants
    assert len(ids) == len(set(ids)) == MAX_PARTICIPANTS


@pytest.mark.parametrize("info", [None, "mp4", {"format": 4}, {}])
def test_no_usable_format_is_none(info: object) -> None:
    assert parse_metadata(doc(recordingInfo=info)).format is None
