"""The record of a quarantined job: what failed, how often, and the job itself.

Written twice when the worker gives up on a job: as a message in
``<queue>-poison`` that never expires (it drives the alert and is what the
host's own poisoning also produces), and as a blob in the archive's
``_quarantine/`` area (durable whatever happens to the queue). ``replay
--poison`` reads both; a bare job the host moved to the poison queue by itself
reads as a record too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recording_pipeline.core.errors import InvalidEventError
from recording_pipeline.core.jobs import decode_job


@dataclass(frozen=True)
class QuarantineRecord:
    error: str
    attempts: int
    quarantined_at: datetime
    job: dict[str, Any] | None  # the decoded job; None when the message was not a job at all
    original: str | None = None  # the raw message text, kept when it could not be decoded

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "error": self.error,
                "attempts": self.attempts,
                "quarantinedAt": self.quarantined_at.isoformat(),
                "job": self.job,
                "original": self.original,
            },
            indent=1,
        ).encode()


def job_text_of(content: str | bytes) -> str | None:
    """The job a quarantine record (or a bare job the host moved) holds, re-encoded; None if it holds none."""
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    candidate = doc.get("job") if isinstance(doc, dict) and "error" in doc else doc
    if candidate is None and isinstance(doc, dict):
        candidate = doc.get("original")
    text = candidate if isinstance(candidate, str) else json.dumps(candidate)
    try:
        return decode_job(text).model_dump_json(exclude_none=True)
    except InvalidEventError:
        return None
