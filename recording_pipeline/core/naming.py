"""Blob names in the archive, derived only from a recording's identity.

Deterministic names are what make duplicate deliveries converge on one copy.
Ids are validated before they become names: a forged id must not climb out of
its folder, hide control characters, or collide with another recording.

Layout of the write-once archive (container ``ARCHIVE_CONTAINER``)::

    {callId}/{recordingKey}/{index:05d}-{documentId}.{mp4|mp3|wav|bin}   the media
    {callId}/{recordingKey}/{index:05d}-{documentId}.metadata.json       ACS's metadata document
    {callId}/{recordingKey}/{index:05d}-{documentId}.custody.json        chain of custody: the proof
    {callId}/{recordingKey}/{index:05d}-{documentId}.source-deleted.json when ACS's copy was deleted
    {callId}/{recordingKey}/external.json                                bring-your-own-storage recording
    _lost/{callId}/{recordingKey}/{index:05d}-{documentId}.json
    _rejected/{yyyy}/{mm}/{dd}/{sha256 of the raw event}.json
    _index/participants/{sha256(participantId)}/{callId}/{recordingKey}
    _index/days/{yyyy-mm-dd}/{callId}/{recordingKey}                      the recording's start day (UTC)
    _index/cases/{case}/{callId}/{recordingKey}                           a legal-hold case covered it
    _index/access/{callId}/{recordingKey}/{yyyymmddTHHMMSSffffffZ}-{action}-{id}  an access to it
    _access/{yyyy-mm-dd}/{HHMMSSffffff}Z-{action}-{id}.json             who accessed what, when: the record

Every ``_index/`` entry is a small JSON blob, created once, found by a prefix listing: a lookup costs one
listing of what it returns. A call's recordings need no index of their own: the archive's ``{callId}/``
folder (and ``_lost/{callId}/``) is one. The ``_access/`` records name the access's action
(``export``, ``hold-place``, ``hold-clear``; later ``download``, ``playback``), so one listing of a day's
records answers "who accessed anything", and each record's entries under ``_index/access/`` answer it per
recording.

and of the state beside it (container ``ARCHIVE_STATE_CONTAINER``), which changes and can be rebuilt::

    {callId}/{recordingKey}/manifest.json
    _quarantine/{callId}/{recordingKey}/{index:05d}-{documentId}.json
    _quarantine/_invalid/{sha256 of the message}.json
    _locks/{callId}/{recordingKey}/{index:05d}-{documentId}
    _holds/{case}.json
    _fixity/cursor.json                                                  the fixity audit's position and passes
    _fixity/verified/{callId}/{recordingKey}.json                        each chunk's last fixity check
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime

from recording_pipeline.core.errors import InvalidEventError

MAX_ID_LENGTH = 256
QUARANTINE_PREFIX = "_quarantine/"
HOLDS_PREFIX = "_holds/"
LOST_PREFIX = "_lost/"
OUTBOX_PREFIX = "_outbox/"  # state container: outbound events not delivered yet
DAYS_PREFIX = "_index/days/"
CASES_PREFIX = "_index/cases/"
ACCESS_PREFIX = "_access/"
ACCESS_INDEX_PREFIX = "_index/access/"
ACCESS_ACTIONS = ("export", "hold-place", "hold-clear", "download", "playback")
_ACCESS_ID = re.compile(r"^[0-9a-f]{32}$")
FIXITY_PREFIX = "_fixity/"  # state container: the fixity audit's cursor and each chunk's last check
FIXITY_CURSOR = f"{FIXITY_PREFIX}cursor.json"
FIXITY_LOCK = "_locks/_fixity"  # leased by the one audit run at a time
_EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
_ID_CHARACTER = re.compile(r"[A-Za-z0-9_=.:-]")
_ID_START = re.compile(r"[A-Za-z0-9]")

_FORMATS = {
    "mp4": ("mp4", "video/mp4"),
    "mp3": ("mp3", "audio/mpeg"),
    "wav": ("wav", "audio/wav"),
}


def check_id(value: str | None, what: str) -> str:
    """An id safe to use as one path segment of a blob name; the error names the one rule it breaks."""
    if not value:
        raise InvalidEventError(f"{what} is missing")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEventError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    if ".." in value:
        raise InvalidEventError(f"{what} contains '..', which could climb out of its folder")
    outside = sorted({c for c in value if not _ID_CHARACTER.fullmatch(c)})
    if outside:
        shown = " ".join(ascii(c) for c in outside[:5]) + (" …" if len(outside) > 5 else "")
        raise InvalidEventError(f"{what} has characters outside [A-Za-z0-9_=.:-]: {shown}")
    if not _ID_START.fullmatch(value[0]):
        raise InvalidEventError(f"{what} must start with a letter or a digit, not {value[0]!r}")
    return value


def recording_key(recording_id: str | None, server_call_id: str | None) -> str:
    """The folder of one recording under its call.

    ``recordingId`` when the event has one; otherwise a digest of the
    serverCallId (which can be long), otherwise ``call`` for the oldest events
    that carry neither. Prefixes keep the three kinds from colliding.
    """
    if recording_id:
        return f"r-{recording_id}"
    if server_call_id:
        return f"s-{hashlib.sha256(server_call_id.encode()).hexdigest()[:32]}"
    return "call"


def recording_prefix(call_id: str, rec_key: str) -> str:
    return f"{call_id}/{rec_key}/"


def manifest_name(call_id: str, rec_key: str) -> str:
    return f"{recording_prefix(call_id, rec_key)}manifest.json"


def chunk_stem(call_id: str, rec_key: str, index: int, document_id: str) -> str:
    return f"{recording_prefix(call_id, rec_key)}{index:05d}-{document_id}"


def media_name(stem: str, extension: str) -> str:
    return f"{stem}.{extension}"


def metadata_name(stem: str) -> str:
    return f"{stem}.metadata.json"


def custody_name(stem: str) -> str:
    return f"{stem}.custody.json"


def source_deleted_name(stem: str) -> str:
    return f"{stem}.source-deleted.json"


def external_name(call_id: str, rec_key: str) -> str:
    return f"{recording_prefix(call_id, rec_key)}external.json"


def lock_name(stem: str) -> str:
    return f"_locks/{stem}"


def hold_name(case: str) -> str:
    return f"{HOLDS_PREFIX}{check_id(case, 'case')}.json"


def fixity_name(call_id: str, rec_key: str) -> str:
    return f"{FIXITY_PREFIX}verified/{recording_prefix(call_id, rec_key).rstrip('/')}.json"


def lost_name(stem: str) -> str:
    return f"{LOST_PREFIX}{stem}.json"


def quarantine_name(stem: str) -> str:
    return f"{QUARANTINE_PREFIX}{stem}.json"


def outbox_name(event_id: str) -> str:
    """An outbound event waiting for redelivery, named by its (deterministic) id: kept once however often it fails."""
    if not _EVENT_ID.fullmatch(event_id):
        raise InvalidEventError(f"not an outbound event id: {event_id[:40]!r}")
    return f"{OUTBOX_PREFIX}{event_id}.json"


def quarantine_invalid_name(message: str) -> str:
    """A queue message that is not a job at all (it has no identity to name it by)."""
    return f"{QUARANTINE_PREFIX}_invalid/{hashlib.sha256(message.encode()).hexdigest()}.json"


def rejected_name(raw_event: bytes, received: datetime) -> str:
    digest = hashlib.sha256(raw_event).hexdigest()
    return f"_rejected/{received:%Y/%m/%d}/{digest}.json"


def participant_digest(participant_id: str) -> str:
    return hashlib.sha256(participant_id.encode()).hexdigest()


def participant_prefix(participant_id: str) -> str:
    return f"_index/participants/{participant_digest(participant_id)}/"


def participant_entry(participant_id: str, call_id: str, rec_key: str) -> str:
    return f"{participant_prefix(participant_id)}{call_id}/{rec_key}"


def day_prefix(day: date) -> str:
    """The recordings that started on ``day`` (UTC): one listing."""
    return f"{DAYS_PREFIX}{day.isoformat()}/"


def day_entry(day: date, call_id: str, rec_key: str) -> str:
    return f"{day_prefix(day)}{call_id}/{rec_key}"


def start_day(recording_start_time: datetime | None, fallback: datetime) -> date:
    """The day a recording is filed under: its start (UTC), else ``fallback`` (the event's time, or when the
    archive first heard of it), for the oldest events, which carry no start time."""
    when = recording_start_time or fallback
    return (when if when.tzinfo is None else when.astimezone(UTC)).date()


def case_prefix(case: str) -> str:
    """The recordings a legal-hold case covered: one listing."""
    return f"{CASES_PREFIX}{check_id(case, 'case')}/"


def case_entry(case: str, call_id: str, rec_key: str) -> str:
    return f"{case_prefix(case)}{call_id}/{rec_key}"


def access_id(value: str) -> str:
    if not _ACCESS_ID.fullmatch(value):
        raise InvalidEventError(f"not an access record id: {value[:40]!r}")
    return value


def _access_action(action: str) -> str:
    if action not in ACCESS_ACTIONS:
        raise InvalidEventError(f"not an access action: {action[:40]!r}")
    return action


def access_record_name(at: datetime, action: str, record_id: str) -> str:
    """Who accessed what, when: listed by day, in time order within it."""
    at = at.astimezone(UTC)
    return f"{ACCESS_PREFIX}{at:%Y-%m-%d}/{at:%H%M%S%f}Z-{_access_action(action)}-{access_id(record_id)}.json"


def access_prefix(day: date) -> str:
    return f"{ACCESS_PREFIX}{day.isoformat()}/"


def recording_access_prefix(call_id: str, rec_key: str) -> str:
    """Every access to one recording, in time order: one listing."""
    return f"{ACCESS_INDEX_PREFIX}{recording_prefix(call_id, rec_key)}"


def recording_access_entry(call_id: str, rec_key: str, at: datetime, action: str, record_id: str) -> str:
    at = at.astimezone(UTC)
    stamp = f"{at:%Y%m%dT%H%M%S%f}Z"
    return f"{recording_access_prefix(call_id, rec_key)}{stamp}-{_access_action(action)}-{access_id(record_id)}"


def access_record_of(entry: str) -> str:
    """The access record a per-recording entry points at (its name says which: no read needed)."""
    stamp, _, rest = entry.rsplit("/", 1)[-1].partition("-")
    action, _, record_id = rest.rpartition("-")
    day, time = stamp[:8], stamp[9:-1]
    return f"{ACCESS_PREFIX}{day[:4]}-{day[4:6]}-{day[6:]}/{time}Z-{_access_action(action)}-{access_id(record_id)}.json"


def media_format(*candidates: str | None) -> tuple[str, str]:
    """(extension, content type) from the first known format among the candidates."""
    for candidate in candidates:
        known = _FORMATS.get((candidate or "").strip().lower())
        if known:
            return known
    return ("bin", "application/octet-stream")
