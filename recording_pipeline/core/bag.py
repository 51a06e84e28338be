"""A case handed over as a BagIt bag (RFC 8493), as data: what goes where, and the text of every tag file.

The bag holds, under ``data/``, each exported blob at its archive name (``data/{callId}/{recordingKey}/…``), so a
path in the bag is the blob it came from: the media, its metadata document, its chain-of-custody and
source-deleted records, and the recording's ``_lost/`` and external records. Beside ``data/``: ``bagit.txt``,
``bag-info.txt`` (the query, who ran it and when, the app's version, Payload-Oxum), ``manifest-sha256.txt`` (every
payload file), ``index.csv`` and ``index.json`` (what is in it, a row per chunk), and ``tagmanifest-sha256.txt``
(every tag file but itself). Any BagIt tool checks it (the Library of Congress's ``bagit``), and so does
``sha256sum -c manifest-sha256.txt``.

Pure: the app's export (``app/export.py``) reads the archive and writes the files; this module only says what
they are.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from recording_pipeline.core.errors import BagLayoutError

BAGIT = "bagit.txt"
BAG_INFO = "bag-info.txt"
MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"
INDEX_CSV = "index.csv"
INDEX_JSON = "index.json"
PAYLOAD = "data/"
BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


class FileKind(StrEnum):
    MEDIA = "media"
    METADATA = "metadata"
    CUSTODY = "custody"
    SOURCE_DELETED = "source-deleted"
    LOST = "lost"
    EXTERNAL = "external"


@dataclass(frozen=True)
class ChunkLabel:
    """Which chunk a file belongs to, as an error names it."""

    call_id: str
    recording_key: str
    index: int
    document_id: str

    def __str__(self) -> str:
        return f"chunk {self.index} ({self.document_id}) of {self.call_id}/{self.recording_key}"


@dataclass(frozen=True)
class BagFile:
    """One payload file: where it comes from, where it goes, and what its chain of custody says it must be
    (``sha256``, ``size``), when it says anything: the media and the metadata document."""

    blob: str
    kind: FileKind
    chunk: ChunkLabel | None = None
    sha256: str | None = None
    size: int | None = None

    @property
    def path(self) -> str:
        return payload_path(self.blob)


@dataclass
class ChunkRow:
    """One chunk in the bag's index."""

    call_id: str
    recording_key: str
    recording_id: str | None
    recording_start_time: datetime | None
    chunk_index: int
    document_id: str
    state: str  # archived, lost
    end_reason: str | None = None
    content_type: str | None = None
    size: int | None = None
    sha256: str | None = None
    archived_at: datetime | None = None
    verification: str | None = None
    source_deleted_at: datetime | None = None
    participants: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # FileKind -> path in the bag

    def to_dict(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "recordingKey": self.recording_key,
            "recordingId": self.recording_id,
            "recordingStartTime": _iso(self.recording_start_time),
            "chunkIndex": self.chunk_index,
            "documentId": self.document_id,
            "state": self.state,
            "endReason": self.end_reason,
            "contentType": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "archivedAt": _iso(self.archived_at),
            "verification": self.verification,
            "sourceDeletedAt": _iso(self.source_deleted_at),
            "participants": self.participants,
            "files": self.files,
        }


CSV_COLUMNS = (
    "callId",
    "recordingKey",
    "recordingId",
    "recordingStartTime",
    "chunkIndex",
    "documentId",
    "state",
    "endReason",
    "contentType",
    "size",
    "sha256",
    "archivedAt",
    "verification",
    "sourceDeletedAt",
    "participants",
    *(f"{kind.value}Path" for kind in FileKind),
)


def payload_path(blob: str) -> str:
    """A blob's place in the bag: its archive name under ``data/``. Archive names are checked ids joined by
    ``/`` (core.naming), never ``..`` nor absolute; refused here all the same."""
    parts = blob.split("/")
    if not blob or blob.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise BagLayoutError(f"not a payload name: {blob!r}")
    return PAYLOAD + blob


def encode_path(path: str) -> str:
    """A path as a manifest line carries it (RFC 8493 §2.1.3: percent-encode %, CR and LF)."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def manifest_text(digests: Mapping[str, str]) -> bytes:
    """``sha256  path`` per file, in path order: a BagIt manifest, and what ``sha256sum -c`` reads."""
    return "".join(f"{digests[path]}  {encode_path(path)}\n" for path in sorted(digests)).encode()


def payload_oxum(sizes: Iterable[int]) -> str:
    """``octets.streams``: the payload's total size and file count (RFC 8493 §2.2.2)."""
    counted = list(sizes)
    return f"{sum(counted)}.{len(counted)}"


def bag_info_text(fields: Sequence[tuple[str, str]]) -> bytes:
    """``Label: value`` lines; a value is kept on one line (line breaks become spaces)."""
    lines = []
    for label, value in fields:
        if not label or ":" in label or label != label.strip():
            raise BagLayoutError(f"not a bag-info label: {label!r}")
        lines.append(f"{label}: {' '.join(str(value).split())}\n")
    return "".join(lines).encode()


def tagmanifest_text(tag_files: Mapping[str, bytes]) -> bytes:
    """Every tag file's sha256 (all but the tag manifest itself)."""
    return manifest_text({name: hashlib.sha256(data).hexdigest() for name, data in tag_files.items()})


def index_csv(rows: Sequence[ChunkRow]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        doc = row.to_dict()
        cells = [doc[c] for c in CSV_COLUMNS[:14]] + [";".join(row.participants)]
        cells += [row.files.get(kind.value, "") for kind in FileKind]
        writer.writerow("" if cell is None else cell for cell in cells)
    return out.getvalue().encode()


def index_json(header: Mapping[str, Any], rows: Sequence[ChunkRow], recordings: Sequence[Mapping[str, Any]]) -> bytes:
    doc = {**header, "recordings": list(recordings), "chunks": [row.to_dict() for row in rows]}
    return (json.dumps(doc, indent=1) + "\n").encode()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
