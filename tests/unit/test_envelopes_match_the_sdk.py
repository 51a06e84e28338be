"""The core reads envelopes itself; here each one is held against azure-eventgrid's and azure-core's classes.

Every fixture, and events generated with hypothesis, must give the same id, type, topic/source, subject, time
and data as EventGridEvent.from_dict / CloudEvent.from_dict.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from azure.core.messaging import CloudEvent
from azure.core.serialization import NULL
from azure.eventgrid import EventGridEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from recording_pipeline.core.events import Envelope, read_envelope
from tests.support.stack import FIXTURES

EVENTS = FIXTURES / "events"


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value if value.tzinfo else value.replace(tzinfo=UTC)


def _same_as_the_sdk(raw: dict[str, Any], cloud: bool) -> None:
    ours: Envelope = read_envelope(raw, "cloudevents" if cloud else "eventgrid")
    if cloud:
        sdk: Any = CloudEvent.from_dict(raw)
        data = None if sdk.data is NULL else sdk.data  # the SDK's marker for an explicit "data": null
        expected = (sdk.id, sdk.type, sdk.source, sdk.subject, _aware(sdk.time), data)
    else:
        sdk = EventGridEvent.from_dict(raw)
        expected = (sdk.id, sdk.event_type, sdk.topic, sdk.subject, _aware(sdk.event_time), sdk.data)
    assert (ours.id, ours.type, ours.topic, ours.subject, ours.time, ours.data) == expected


def _fixture_events() -> list[tuple[dict[str, Any], bool]]:
    found = []
    for path in sorted(EVENTS.glob("*.json")):
        doc = json.loads(path.read_text())
        for raw in doc if isinstance(doc, list) else [doc]:
            found.append((raw, "specversion" in raw))
    return found


def test_every_fixture_reads_as_the_sdk_reads_it() -> None:
    events = _fixture_events()
    assert len(events) >= 10 and any(cloud for _raw, cloud in events) and not all(c for _r, c in events)
    for raw, cloud in events:
        _same_as_the_sdk(raw, cloud)


times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.isoformat().replace("+00:00", "Z")
)
text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=40)
data = st.recursive(st.none() | st.booleans() | st.integers() | text, lambda c: st.dictionaries(text, c, max_size=3))


@settings(max_examples=150, deadline=None)
@given(ident=text, kind=text, topic=text, subject=text, time=times, payload=st.dictionaries(text, data, max_size=4))
def test_generated_event_grid_events_read_as_the_sdk_reads_them(
    ident: str, kind: str, topic: str, subject: str, time: str, payload: dict[str, Any]
) -> None:
    raw = {"id": ident, "eventType": kind, "topic": topic, "subject": subject, "eventTime": time,
           "dataVersion": "1.0", "data": payload}  # fmt: skip
    _same_as_the_sdk(raw, cloud=False)


@settings(max_examples=150, deadline=None)
@given(ident=text, kind=text, source=text, subject=st.none() | text, time=st.none() | times, payload=data)
def test_generated_cloudevents_read_as_the_sdk_reads_them(
    ident: str, kind: str, source: str, subject: str | None, time: str | None, payload: Any
) -> None:
    raw: dict[str, Any] = {"specversion": "1.0", "id": ident, "type": kind, "source": source, "data": payload}
    if subject is not None:
        raw["subject"] = subject
    if time is not None:
        raw["time"] = time
    _same_as_the_sdk(raw, cloud=True)
