"""One archived chunk, proved again: its media streamed and re-hashed against its chain-of-custody record (size,
sha256, committed block list, the metadata document's sha256) and what the caller expected (the manifest's entry,
or the custody record itself). ``recording-archive verify`` runs it on demand over recordings; the fixity audit
(app/fixity) runs it on a schedule over a slice of the archive. It only reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from recording_pipeline.core.custody import CustodyRecord
from recording_pipeline.core.errors import BlobArchivedError, StorageError
from recording_pipeline.core.naming import custody_name
from recording_pipeline.core.ports import ArchiveStore
from recording_pipeline.core.state import ChunkState


class CheckResult(StrEnum):
    OK = "ok"
    MISMATCH = "mismatch"
    MISSING = "missing"
    SKIPPED = "skipped"  # not archived: nothing to verify
    OFFLINE = "offline"  # in the archive access tier: its bytes cannot be read until it is rehydrated


@dataclass
class ChunkCheck:
    index: int
    document_id: str | None
    chunk_state: ChunkState
    media_blob: str | None
    result: CheckResult = CheckResult.OK
    expected_size: int | None = None
    actual_size: int | None = None
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, result: CheckResult, problem: str) -> None:
        if self.result is not CheckResult.MISSING:
            self.result = result
        self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "documentId": self.document_id,
            "chunkState": self.chunk_state.value,
            "mediaBlob": self.media_blob,
            "result": self.result.value,
            "expectedSize": self.expected_size,
            "actualSize": self.actual_size,
            "expectedSha256": self.expected_sha256,
            "actualSha256": self.actual_sha256,
            "problems": self.problems,
        }


MANIFEST = "manifest"
CUSTODY = "custody record"


async def verify_chunk(
    archive: ArchiveStore,
    check: ChunkCheck,
    stem: str,
    advance: Callable[[int], None],
    custody: CustodyRecord | None = None,
    against: str = MANIFEST,
) -> None:
    """The media, re-hashed, against its chain-of-custody record (read from ``stem``'s, unless given) and what
    ``check`` expects, which came from ``against`` (the manifest, or the custody record itself: then it is not
    compared with itself); ``advance`` is told the bytes as they are read (all of ``expected_size`` in the end)."""
    assert check.media_blob is not None and check.expected_size is not None
    expected = check.expected_size
    if custody is None:
        custody = await read_custody(archive, stem, check)
    # Expected from the custody record itself: nothing to compare it with.
    custody_apart = None if against == CUSTODY else custody
    info = await archive.info(check.media_blob)
    if info is None:
        check.fail(CheckResult.MISSING, "media blob is missing")
        advance(expected)
        return
    check.actual_size = info.size
    if info.size != expected:
        check.fail(CheckResult.MISMATCH, f"blob is {info.size} bytes, {against} says {expected}")
    if custody is not None:
        if custody_apart is not None and (custody.size, custody.sha256) != (expected, check.expected_sha256):
            check.fail(CheckResult.MISMATCH, "the custody record and the manifest disagree on size or sha256")
        committed = [(b.block_id, b.size) for b in await archive.committed_blocks(check.media_blob)]
        if committed != [(b.id, b.size) for b in custody.blocks]:
            check.fail(CheckResult.MISMATCH, "committed block list is not the one the custody record names")
        document = await archive.read_bytes(custody.metadata_blob)
        if document is None:
            check.fail(CheckResult.MISSING, "the metadata document is missing")
        elif hashlib.sha256(document[0]).hexdigest() != custody.metadata_sha256:
            check.fail(CheckResult.MISMATCH, "the metadata document's sha256 is not the custody record's")
    read = 0

    def step(count: int) -> None:
        nonlocal read
        read += count
        advance(count)

    try:
        check.actual_sha256, _size = await archive.sha256(check.media_blob, step)
    except BlobArchivedError:
        if check.result is CheckResult.OK:
            check.result = CheckResult.OFFLINE
        check.problems.append("in the archive access tier: rehydrate it to re-hash it")
        advance(max(0, expected - read))
        return
    except StorageError as exc:
        if exc.status != 404:
            raise
        check.fail(CheckResult.MISSING, "media blob disappeared while it was read")
        advance(max(0, expected - read))
        return
    advance(max(0, expected - read))
    if read != info.size:
        check.fail(CheckResult.MISMATCH, f"read {read} bytes of a {info.size}-byte blob")
    if check.actual_sha256 != check.expected_sha256:
        check.fail(
            CheckResult.MISMATCH, f"content sha256 is {check.actual_sha256}, {against} says {check.expected_sha256}"
        )
    if custody_apart is not None and check.actual_sha256 != custody_apart.sha256:
        check.fail(
            CheckResult.MISMATCH, f"content sha256 is {check.actual_sha256}, custody says {custody_apart.sha256}"
        )


async def read_custody(
    archive: ArchiveStore, stem: str, check: ChunkCheck, absent: CheckResult = CheckResult.MISMATCH
) -> CustodyRecord | None:
    """The chunk's chain-of-custody record; None (and ``check`` failed, ``absent`` if there is none) if it is absent
    or is not one."""
    found = await archive.read_bytes(custody_name(stem))
    if found is None:
        check.fail(absent, "no chain-of-custody record")
        return None
    try:
        return CustodyRecord.model_validate_json(found[0])
    except ValidationError:
        check.fail(CheckResult.MISMATCH, "the chain-of-custody record is not one")
        return None
