"""What proves an archived copy whole, before its custody record is written and ACS's copy deleted.

Pure checks over what the archive reports; the worker gathers the facts (what
it committed or the blob's properties, the committed block list, the sha256 it
streamed or read back) and these decide. Any doubt raises ArchiveIntegrityError:
no custody record is written, and the source is kept.
"""

from __future__ import annotations

from recording_pipeline.core.errors import ArchiveIntegrityError
from recording_pipeline.core.ports import BlobInfo, StagedBlock

SHA256 = "sha256"
SOURCE_SIZE = "source_size"
SOURCE_SIZE_DECLARED = "source_size_declared"
SINGLE_PUT = "single_put"  # "true": created whole by one Put Blob, so it has no committed block list


def check_committed(info: BlobInfo, committed: list[StagedBlock], staged: list[str] | None) -> None:
    """The blob is the size ACS served, made of its blocks, and (when this attempt staged them) of ours."""
    source_size = info.metadata.get(SOURCE_SIZE)
    if source_size != str(info.size):
        raise ArchiveIntegrityError(f"{info.name}: {info.size} bytes archived, ACS served {source_size}")
    if not committed and info.metadata.get(SINGLE_PUT) == "true":
        return  # one Put Blob: no blocks to check; the service checked its Content-MD5 as it arrived
    if sum(b.size for b in committed) != info.size:
        raise ArchiveIntegrityError(f"{info.name}: committed blocks do not add up to the blob's size")
    if staged is not None and [b.block_id for b in committed] != staged:
        raise ArchiveIntegrityError(f"{info.name}: committed block list is not the one staged")


def check_read_back(info: BlobInfo, sha256: str, size: int) -> None:
    """A hash of the archived bytes agrees with the blob and with any hash recorded at commit."""
    if size != info.size:
        raise ArchiveIntegrityError(f"{info.name}: read back {size} bytes of {info.size}")
    recorded = info.metadata.get(SHA256)
    if recorded and recorded != sha256:
        raise ArchiveIntegrityError(f"{info.name}: sha256 of the archive differs from the recorded one")
