"""The access record: who did what to which recordings, and when, written once in the archive.

An auditor asks two questions of an archive's access trail (SEC 17a-4 wants one): who touched anything on a
day, and who touched this recording. So each access is one record, ``_access/{day}/{time}Z-{action}-{id}.json``
(one listing per day answers the first), and one small entry per recording it concerns,
``_index/access/{callId}/{recordingKey}/{time}Z-{action}-{id}`` (one listing answers the second), both created
once and never changed, under the archive's WORM retention with the recordings themselves.

The actions are those of ``core.naming.ACCESS_ACTIONS``: ``export`` (a bag was handed over: its query, target
and digests), ``hold-place`` and ``hold-clear`` (a legal-hold case's scope; the case index is made again from
these), and, for the consoles to come, ``download`` and ``playback``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from recording_pipeline.core.naming import access_record_name, recording_access_entry
from recording_pipeline.core.state import Instant

SCHEMA = 1


class AccessedRecording(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, frozen=True)

    call_id: str
    recording_key: str


class AccessRecord(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", alias_generator=to_camel, frozen=True)

    schema_version: int = Field(default=SCHEMA, alias="schema")
    kind: Literal["access"] = "access"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    action: str
    actor: str  # who ran it, as the caller names them (the operator's login, a console's signed-in user)
    at: Instant
    recordings: list[AccessedRecording]
    case: str | None = None
    query: dict[str, Any] | None = None  # what selected the recordings
    details: dict[str, Any] = Field(default_factory=dict)  # what the action produced (an export: its bag)
    app_version: str

    @property
    def name(self) -> str:
        return access_record_name(self.at, self.action, self.id)

    def entries(self) -> list[str]:
        """The per-recording entries that point at this record."""
        return [
            recording_access_entry(r.call_id, r.recording_key, self.at, self.action, self.id)
            for r in dict.fromkeys(self.recordings)
        ]

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=1).encode()


def access_record(
    action: str,
    actor: str,
    at: datetime,
    recordings: list[tuple[str, str]],
    app_version: str,
    *,
    record_id: str | None = None,
    case: str | None = None,
    query: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> AccessRecord:
    """A record of one access; its name is checked (action, id) as it is made."""
    record = AccessRecord(
        id=record_id or uuid.uuid4().hex,
        action=action,
        actor=actor,
        at=at,
        recordings=[AccessedRecording(call_id=c, recording_key=k) for c, k in recordings],
        case=case,
        query=query,
        details=details or {},
        app_version=app_version,
    )
    _ = record.name  # refuses an unknown action or a malformed id now, not when it is written
    return record
