"""ACS's metadata document for one chunk: parsed, checked against the job, and read.

The document is archived byte for byte; what the pipeline reads from it is the
media format (the blob's extension and content type) and the participants
(the participant index).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from recording_pipeline.core.errors import AcsTransientError, InvalidEventError

MAX_PARTICIPANTS = 200


@dataclass(frozen=True)
class ChunkMetadata:
    body: bytes = field(repr=False)
    document: dict[str, Any] = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def format(self) -> str | None:
        info = self.document.get("recordingInfo")
        value = info.get("format") if isinstance(info, dict) else None
        return value if isinstance(value, str) else None

    @property
    def participants(self) -> list[str]:
        """Distinct participant ids, in order, at most MAX_PARTICIPANTS (a forged document cannot fan out)."""
        listed = self.document.get("participants")
        if not isinstance(listed, list):
            return []
        ids = (p.get("participantId") for p in listed[:MAX_PARTICIPANTS] if isinstance(p, dict))
        return list(dict.fromkeys(pid for pid in ids if isinstance(pid, str) and pid))


def parse_metadata(body: bytes, document_id: str | None = None) -> ChunkMetadata:
    """``body`` as served by ACS (or as archived). Not JSON is transient: ACS sometimes serves it half-ready.

    With ``document_id``: a document that names another chunk is refused for good; it must not be archived
    under this chunk's name.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AcsTransientError("metadata is not JSON") from None
    if not isinstance(document, dict):
        raise AcsTransientError("metadata is not a JSON object")
    named = document.get("chunkDocumentId")
    if document_id is not None and named is not None and named != document_id:
        raise InvalidEventError(f"metadata at metadataLocation describes chunk {str(named)[:80]}, not this one")
    return ChunkMetadata(body, document)
