"""The bag's layout and tag files (core/bag.py): what RFC 8493 asks of them, and what sha256sum -c reads."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime

import pytest

from recording_pipeline.core.bag import (
    CSV_COLUMNS,
    BagFile,
    ChunkLabel,
    ChunkRow,
    FileKind,
    bag_info_text,
    encode_path,
    index_csv,
    index_json,
    manifest_text,
    payload_oxum,
    payload_path,
    tagmanifest_text,
)
from recording_pipeline.core.errors import BagLayoutError

CALL = "cafe0000-0000-0000-0000-000000000000"


def test_a_blob_goes_under_data_at_its_archive_name_and_nothing_climbs_out() -> None:
    media = f"{CALL}/r-rec1/00000-doc-1.mp4"
    assert payload_path(media) == f"data/{media}"
    assert BagFile(media, FileKind.MEDIA).path == f"data/{media}"
    for bad in ("", "/etc/passwd", "a/../b", "a//b", "./a", "a/."):
        with pytest.raises(BagLayoutError):
            payload_path(bad)


def test_the_manifest_is_sorted_two_spaced_and_percent_encodes_what_rfc_8493_says() -> None:
    text = manifest_text({"data/b": "2" * 64, "data/a": "1" * 64})
    assert text == f"{'1' * 64}  data/a\n{'2' * 64}  data/b\n".encode()
    assert encode_path("data/100%\r\nx") == "data/100%25%0D%0Ax"


def test_payload_oxum_is_octets_dot_streams() -> None:
    assert payload_oxum([3, 4, 0]) == "7.3"
    assert payload_oxum([]) == "0.0"


def test_bag_info_keeps_each_value_on_one_line_and_refuses_bad_labels() -> None:
    assert bag_info_text([("Exported-By", "ana@desk"), ("Export-Query", '{"a":\n 1}')]) == (
        b'Exported-By: ana@desk\nExport-Query: {"a": 1}\n'
    )
    for label in ("", "A:B", " Padded"):
        with pytest.raises(BagLayoutError):
            bag_info_text([(label, "x")])


def test_the_tag_manifest_names_each_tag_file_s_sha256() -> None:
    files = {"bagit.txt": b"BagIt-Version: 1.0\n", "bag-info.txt": b"X: y\n"}
    assert (
        tagmanifest_text(files)
        == (
            f"{hashlib.sha256(b'X: y' + bytes([10])).hexdigest()}  bag-info.txt\n"
            f"{hashlib.sha256(files['bagit.txt']).hexdigest()}  bagit.txt\n"
        ).encode()
    )


def test_the_index_has_a_row_per_chunk_in_csv_and_json() -> None:
    row = ChunkRow(
        CALL,
        "r-rec1",
        "rec1",
        datetime(2026, 3, 3, 9, tzinfo=UTC),
        0,
        "doc-1",
        "archived",
        content_type="video/mp4",
        size=3,
        sha256="a" * 64,
        participants=["8:acs:a", "4:+1555"],
        files={"media": "data/m.mp4", "custody": "data/m.custody.json"},
    )
    table = list(csv.DictReader(io.StringIO(index_csv([row]).decode())))
    assert list(table[0]) == list(CSV_COLUMNS)
    assert (table[0]["callId"], table[0]["size"], table[0]["participants"]) == (CALL, "3", "8:acs:a;4:+1555")
    assert (table[0]["mediaPath"], table[0]["lostPath"], table[0]["sourceDeletedAt"]) == ("data/m.mp4", "", "")
    doc = json.loads(index_json({"exportId": "x"}, [row], [{"callId": CALL}]))
    assert doc["exportId"] == "x" and doc["recordings"] == [{"callId": CALL}]
    assert doc["chunks"][0]["recordingStartTime"] == "2026-03-03T09:00:00+00:00"


def test_a_chunk_label_says_which_chunk_of_which_recording() -> None:
    assert str(ChunkLabel(CALL, "r-rec1", 1, "doc-2")) == f"chunk 1 (doc-2) of {CALL}/r-rec1"
