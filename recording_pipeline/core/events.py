"""Typed models of what Event Grid delivers, in either schema.

Envelopes are read here, by the project's own code, field by field as the two
schemas define them (Event Grid's event schema; CloudEvents 1.0 with
``data``/``data_base64``); a test holds every fixture and generated event
against azure-eventgrid's EventGridEvent and azure-core's CloudEvent, so the
core needs neither package. The ``data`` of a recording event is validated
with pydantic. Every failure becomes an InvalidEventError whose message says
which field is wrong, so a rejected event can be understood from the log alone.

What ACS may send tomorrow is accepted: unknown fields are ignored, every field
the published models (``AcsRecordingFileStatusUpdatedEventData``,
``AcsRecordingChunkInfo``) or the bring-your-own-storage preview may leave out is
optional, and a field name is read in any casing the SDKs render it in:
camelCase as Event Grid sends it, snake_case as the Python SDK's ``as_dict()``
writes it (its ``from_dict`` reads both, case-insensitively), PascalCase. What
safety rests on stays strict: ids (checked again before they become names),
URLs (core.urls), sizes and indexes (JSON integers within bounds), and a field
given twice under two spellings with different values.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from recording_pipeline.core.errors import InvalidEventError

VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
RECORDING_EVENT_TYPE = "Microsoft.Communication.RecordingFileStatusUpdated"

Schema = Literal["eventgrid", "cloudevents"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True, str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _any_casing(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        names = [field.alias or name for name, field in cls.model_fields.items()]
        try:
            return canonical_names(raw, names)
        except InvalidEventError as exc:
            raise ValueError(str(exc)) from None


class RecordingChunkInfo(_Model):
    document_id: str = Field(alias="documentId", min_length=1)
    index: StrictInt = Field(default=0, ge=0, le=100_000)
    end_reason: str | None = Field(default=None, alias="endReason")
    content_location: str | None = Field(default=None, alias="contentLocation")
    metadata_location: str | None = Field(default=None, alias="metadataLocation")
    delete_location: str | None = Field(default=None, alias="deleteLocation")


class RecordingStorageInfo(_Model):
    # Empty or absent: nothing in ACS's storage (planning refuses that unless the files went to the customer's own).
    recording_chunks: list[RecordingChunkInfo] = Field(default_factory=list, alias="recordingChunks", max_length=1000)

    @field_validator("recording_chunks")
    @classmethod
    def _distinct_indexes(cls, chunks: list[RecordingChunkInfo]) -> list[RecordingChunkInfo]:
        if len({c.index for c in chunks}) != len(chunks):
            raise ValueError("two chunks share one index")
        return chunks


class RecordingFileStatusUpdatedData(_Model):
    recording_storage_info: RecordingStorageInfo | None = Field(default=None, alias="recordingStorageInfo")
    recording_start_time: datetime | None = Field(default=None, alias="recordingStartTime")
    recording_duration_ms: StrictInt | None = Field(default=None, alias="recordingDurationMs", ge=0, le=10**12)
    session_end_reason: str | None = Field(default=None, alias="sessionEndReason")
    storage_type: str | None = Field(default=None, alias="storageType")
    recording_id: str | None = Field(default=None, alias="recordingId")
    recording_content_type: str | None = Field(default=None, alias="recordingContentType")
    recording_channel_type: str | None = Field(default=None, alias="recordingChannelType")
    recording_format_type: str | None = Field(default=None, alias="recordingFormatType")
    recording_expiration_time: datetime | None = Field(default=None, alias="recordingExpirationTime")

    @property
    def chunks(self) -> list[RecordingChunkInfo]:
        """The chunks ACS stored, none if the event lists none."""
        info = self.recording_storage_info
        return list(info.recording_chunks) if info is not None else []


@dataclass(frozen=True)
class Envelope:
    """The schema-independent part of one delivered event."""

    schema: Schema
    id: str
    type: str
    topic: str | None
    subject: str | None
    time: datetime | None
    data: Any


@dataclass(frozen=True)
class RecordingIdentity:
    call_id: str
    server_call_id: str | None = None
    recording_id: str | None = None


@dataclass(frozen=True)
class RecordingEvent:
    envelope: Envelope
    identity: RecordingIdentity
    data: RecordingFileStatusUpdatedData
    received: datetime  # when this app received it: a last resort for an event that gives no time

    @property
    def event_time(self) -> datetime:
        return self.envelope.time or self.received

    def deadline(self, retention_hours: float) -> datetime:
        """The earliest moment ACS may delete the files, from everything the event says.

        ``recordingExpirationTime`` is ACS's own deadline when present; the
        retention counts from the recording's end (start + duration) or the
        event's time, whichever is earlier. Receipt comes last: Event Grid may
        deliver hours late, and a late clock must never move the deadline later.
        """
        retention = timedelta(hours=retention_hours)
        data = self.data
        start = _aware(data.recording_start_time)
        duration = data.recording_duration_ms
        candidates = [
            _aware(data.recording_expiration_time),
            _later(self.envelope.time, retention),
            _later(_later(start, timedelta(milliseconds=duration)), retention) if duration is not None else None,
        ]
        known = [c for c in candidates if c is not None]
        return min(known) if known else self.received + retention


_SUBJECT = re.compile(
    r"^/recording/call/(?P<call>[^/]+)"
    r"(?:/serverCallId/(?P<server>[^/]+))?"
    r"(?:/recordingId/(?P<recording>[^/]+))?/?$"
)


def parse_subject(subject: str | None) -> RecordingIdentity:
    """All three documented subject shapes, oldest (``/recording/call/{callId}``) included."""
    match = _SUBJECT.match(subject or "")
    if not match:
        raise InvalidEventError(f"subject is not /recording/call/{{callId}}/...: {_clip(subject)}")
    return RecordingIdentity(match["call"], match["server"], match["recording"])


def split_body(body: bytes, content_type: str | None) -> tuple[list[Any], Schema]:
    """The JSON body of a POST → its raw events and their schema. Raises InvalidEventError."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEventError(f"body is not JSON: {exc}") from None
    media_type = (content_type or "").split(";")[0].strip().lower()
    events = payload if isinstance(payload, list) else [payload]
    if not events:
        raise InvalidEventError("body is an empty event array")
    if not all(isinstance(e, dict) for e in events):
        raise InvalidEventError("body must be an event object or an array of event objects")
    cloud = media_type.startswith("application/cloudevents") or "specversion" in events[0]
    return events, ("cloudevents" if cloud else "eventgrid")


def read_envelope(raw: Any, schema: Schema) -> Envelope:
    """One raw event → Envelope, its required fields checked by name."""
    if not isinstance(raw, dict):
        raise InvalidEventError("an event must be a JSON object")
    if schema == "cloudevents":
        _require(raw, ("id", "source", "type", "specversion"))
        if "data" in raw and "data_base64" in raw:
            raise InvalidEventError("malformed cloudevents envelope: both data and data_base64")
        data = _base64(raw["data_base64"]) if "data_base64" in raw else raw.get("data")
        time = _time(raw, "time")
        return Envelope(schema, raw["id"], raw["type"], raw["source"], _optional(raw, "subject"), time, data)
    raw = canonical_names(raw, EVENT_GRID_FIELDS)
    _require(raw, ("id", "eventType", "eventTime"))
    _require(raw, ("subject", "dataVersion"), may_be_empty=True)
    time = _time(raw, "eventTime")
    return Envelope(schema, raw["id"], raw["eventType"], _optional(raw, "topic"), raw["subject"], time, raw.get("data"))


# The Event Grid schema's fields, as Event Grid spells them; CloudEvents 1.0 attribute names are lower case by the
# spec (and azure-core's CloudEvent.from_dict reads only those), so they are read as they are.
EVENT_GRID_FIELDS = ("id", "topic", "subject", "data", "eventType", "eventTime", "dataVersion", "metadataVersion")


def canonical_names(raw: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``raw`` with each key that spells one of ``names`` another way (``event_type``, ``EventType``) renamed to it.

    A name is matched ignoring case and underscores, as azure-eventgrid's ``Model.from_dict`` matches both its
    attribute and its REST key case-insensitively. Other keys are kept as they are. A field given twice, under two
    spellings with different values, is refused: which one ACS meant cannot be known.
    """
    wanted = {_folded(name): name for name in names}
    renamed: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in raw.items():
        name = wanted.get(_folded(key), key) if isinstance(key, str) else key
        if name in renamed and renamed[name] != value:
            raise InvalidEventError(f"{name} is given twice, as {_clip(spelled[name], 60)} and {_clip(key, 60)}")
        renamed.setdefault(name, value)
        spelled.setdefault(name, key)
    return renamed


def _folded(name: str) -> str:
    return name.replace("_", "").lower()


def parse_recording_event(envelope: Envelope, received: datetime | None = None) -> RecordingEvent:
    """Validate a RecordingFileStatusUpdated envelope's subject and data (``received``: default now)."""
    identity = parse_subject(envelope.subject)
    try:
        data = RecordingFileStatusUpdatedData.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidEventError(f"event {_clip(envelope.id)}: invalid data: {_describe(exc)}") from None
    if data.recording_id and not identity.recording_id:
        identity = RecordingIdentity(identity.call_id, identity.server_call_id, data.recording_id)
    return RecordingEvent(envelope, identity, data, received or datetime.now(UTC))


def validation_code(envelope: Envelope) -> str:
    data = envelope.data if isinstance(envelope.data, dict) else {}
    code = data.get("validationCode")
    if not isinstance(code, str) or not code or len(code) > 512:
        raise InvalidEventError("subscription validation event without a validationCode")
    return code


def _require(raw: dict[str, Any], fields: tuple[str, ...], may_be_empty: bool = False) -> None:
    missing = [f for f in fields if not isinstance(raw.get(f), str) or not (may_be_empty or raw.get(f))]
    if missing:
        raise InvalidEventError(f"event envelope lacks string field(s): {', '.join(missing)}")


def _time(raw: dict[str, Any], field: str) -> datetime | None:
    """An RFC 3339 time (any number of fractional digits; no offset is taken as UTC), or None if absent."""
    value = raw.get(field)
    if value is None:
        return None
    try:
        return _aware(datetime.fromisoformat(str(value)))
    except ValueError:
        raise InvalidEventError(f"event envelope field {field} is not an ISO 8601 time: {_clip(str(value))}") from None


def _later(moment: datetime | None, delta: timedelta) -> datetime | None:
    """``moment + delta``, or None when either is unknown or the sum leaves the calendar (a forged value)."""
    if moment is None:
        return None
    try:
        return moment + delta
    except OverflowError:
        return None


def _optional(raw: dict[str, Any], field: str) -> str | None:
    value = raw.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidEventError(f"event envelope field {field} must be a string")
    return value


def _base64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEventError("malformed cloudevents envelope: data_base64 is not base64") from None


def _aware(value: Any) -> datetime | None:
    if value is None or not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "data"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _clip(text: str | None, limit: int = 200) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit] + "…"
