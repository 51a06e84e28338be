"""What proves an archived copy whole: each check, on each way it can fail."""

from __future__ import annotations

import pytest

from recording_pipeline.core.errors import ArchiveIntegrityError
from recording_pipeline.core.ports import BlobInfo, StagedBlock
from recording_pipeline.core.verification import check_committed, check_read_back

BLOCKS = [StagedBlock("b0", 10), StagedBlock("b1", 5)]


def info(size: int = 15, **metadata: str) -> BlobInfo:
    return BlobInfo("m.mp4", size, "0x1", {"source_size": "15", **metadata})


def test_a_whole_commit_passes() -> None:
    check_committed(info(), BLOCKS, ["b0", "b1"])
    check_committed(info(), BLOCKS, None)  # committed by another attempt: its blocks, not ours to compare


@pytest.mark.parametrize(
    ("blob", "blocks", "staged", "message"),
    [
        (info(size=14), BLOCKS, None, "14 bytes archived, ACS served 15"),
        (info(), [StagedBlock("b0", 10)], None, "do not add up"),
        (info(), BLOCKS, ["b0", "bX"], "not the one staged"),
        (info(), list(reversed(BLOCKS)), ["b0", "b1"], "not the one staged"),
    ],
)
def test_any_doubt_about_the_commit_is_an_integrity_error(
    blob: BlobInfo, blocks: list[StagedBlock], staged: list[str] | None, message: str
) -> None:
    with pytest.raises(ArchiveIntegrityError, match=message):
        check_committed(blob, blocks, staged)


def test_read_back_must_agree_with_the_blob_and_any_recorded_hash() -> None:
    check_read_back(info(), "ab", 15)
    check_read_back(info(sha256="ab"), "ab", 15)
    with pytest.raises(ArchiveIntegrityError, match="read back 14 bytes of 15"):
        check_read_back(info(), "ab", 14)
    with pytest.raises(ArchiveIntegrityError, match="differs from the recorded one"):
        check_read_back(info(sha256="cd"), "ab", 15)
