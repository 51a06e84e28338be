"""Event Grid's dead letters on in-memory edges (app.deadletter): each blob redriven through the webhook's path, what
became of it written beside it once, a refused one never tried again, a failing one tried a bounded number of times
by the schedule and then left for replay, and nothing Event Grid wrote ever changed or deleted. The same on Azurite,
through the local host's timer: tests/e2e/test_deadletter.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from recording_pipeline.app.audit import ArchiveAudit
from recording_pipeline.app.deadletter import (
    REDRIVEN_SUFFIX,
    SCHEDULED_TRIES,
    By,
    DeadLetterReport,
    as_delivery,
    dead_letters,
    redrive_dead_letters,
    webhook_path,
)
from recording_pipeline.app.webhook import WebhookConfig, WebhookRequest, WebhookResponse
from recording_pipeline.core.errors import StorageError
from recording_pipeline.core.jobs import RecordingChunk, decode_job
from recording_pipeline.core.ports import DeadLetterStore
from tests.support.events import ACS_ENDPOINT, DOC, POLICY, chunk, raw_event
from tests.support.fakes import FakeArchive, FakeQueue

CONFIG = WebhookConfig(ACS_ENDPOINT, 24, POLICY, max_body_bytes=1024, max_events=1)
BLOB = "EVGT-ACS/RECORDING-FILE-STATUS-UPDATED/2026/12/06/09/0f6c1b9e-5d1a-4d7e-9a51-3c2b1a0e9f00.json"
DEAD_LETTER_FIELDS = {
    "deadLetterReason": "MaxDeliveryAttemptsExceeded",
    "deliveryAttempts": 30,
    "lastDeliveryOutcome": "Probation",
    "lastHttpStatusCode": 503,
    "publishTime": "2026-12-05T09:00:00Z",
}


class FlakyQueue(FakeQueue):
    """Refuses every enqueue while ``down``."""

    down = True

    async def enqueue(self, jobs: Sequence[RecordingChunk]) -> int:
        if self.down:
            raise StorageError("the queue service refused", status=503)
        return await super().enqueue(jobs)


class World:
    def __init__(self, queue: FakeQueue | None = None) -> None:
        self.deadletter = FakeArchive("eventgrid-deadletter")
        self.queue = queue or FakeQueue()
        self.archive = FakeArchive("recordings")
        self.audit = ArchiveAudit(self.archive, FakeArchive("recordings-state"))
        self.deliveries = 0

    async def dead_letter(self, name: str, events: list[dict[str, Any]] | bytes) -> None:
        body = events if isinstance(events, bytes) else json.dumps(events).encode()
        await self.deadletter.create(name, body, "application/json")

    async def deliver(self, request: WebhookRequest) -> WebhookResponse:
        self.deliveries += 1
        return await webhook_path(CONFIG, self.queue, self.audit)(request)

    async def run(self, by: By = "schedule", redrive: bool = True) -> DeadLetterReport:
        store: DeadLetterStore = self.deadletter
        return await redrive_dead_letters(store, self.deliver, by, redrive)

    def jobs(self) -> list[RecordingChunk]:
        return [decode_job(text) for text, _delay in self.queue.messages]

    def record(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.deadletter.blobs[name].data))

    def rejected(self) -> list[dict[str, Any]]:
        return [json.loads(b.data) for n, b in self.archive.blobs.items() if n.startswith("_rejected/")]


def good() -> list[dict[str, Any]]:
    two = [chunk(DOC, 0), chunk("0-eus-d12-2", 1, "SessionEnded")]
    return [{**raw_event(chunks=two), **DEAD_LETTER_FIELDS}]


def refused() -> list[dict[str, Any]]:
    return [{**raw_event(subject="/recording/call/bad$call"), "id": "refused-1", **DEAD_LETTER_FIELDS}]


async def test_a_dead_lettered_event_is_redriven_once_and_says_so_beside_its_blob(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="recording_pipeline")
    world = World()
    await world.dead_letter(BLOB, good())
    original = world.deadletter.blobs[BLOB].data

    report = await world.run()
    assert (report.redriven, report.enqueued, report.waiting, report.failed) == ([BLOB], 2, 0, [])
    assert sorted((j.chunk_index, j.document_id) for j in world.jobs()) == [(0, DOC), (1, "0-eus-d12-2")]
    record = world.record(f"{BLOB}{REDRIVEN_SUFFIX}")
    assert record["status"] == 200 and record["enqueued"] == 2 and record["by"] == "schedule"
    assert record["rejected"] == [] and record["try"] == 1 and record["redrivenAt"]
    # Beyond the webhook's own limits (1 KiB, 1 event here): a stored payload is not a delivery from Event Grid.
    assert len(json.dumps(good())) > CONFIG.max_body_bytes
    found = [r for r in caplog.records if r.getMessage().startswith("dead-lettered event found")]
    assert [(r.levelno, r.deadletter_blob) for r in found] == [(logging.ERROR, BLOB)]  # type: ignore[attr-defined]
    assert "MaxDeliveryAttemptsExceeded, last HTTP status 503" in found[0].getMessage()

    again = await world.run()
    assert (again.redriven, again.waiting, world.deliveries) == ([], 0, 1)
    assert world.deadletter.blobs[BLOB].data == original and world.deadletter.changed == []


async def test_an_event_refused_again_is_kept_in_rejected_recorded_and_never_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    await world.dead_letter(BLOB, refused())
    report = await world.run()
    assert report.refused == [BLOB] and report.waiting == 0 and world.jobs() == []
    [reason] = report.rejected
    assert "callId has characters outside" in reason
    record = world.record(f"{BLOB}{REDRIVEN_SUFFIX}")
    assert (record["status"], record["rejected"]) == (400, [reason])
    [kept] = world.rejected()
    assert kept["reason"] == reason and kept["event"]["id"] == "refused-1"
    assert any(r.getMessage().startswith(f"dead-lettered event refused again: {BLOB}") for r in caplog.records)
    for _ in range(3):
        await world.run()
    assert world.deliveries == 1


async def test_a_blob_that_is_not_json_is_refused_once_and_kept() -> None:
    world = World()
    await world.dead_letter(BLOB, b"\x00 not json")
    report = await world.run()
    assert report.refused == [BLOB] and report.rejected == []
    record = world.record(f"{BLOB}{REDRIVEN_SUFFIX}")
    assert record["status"] == 400 and record["error"].startswith("body is not JSON")
    assert world.deadletter.blobs[BLOB].data == b"\x00 not json"


async def test_a_failing_redrive_is_tried_a_bounded_number_of_times_then_left_for_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = FlakyQueue()
    world = World(queue)
    await world.dead_letter(BLOB, good())
    for attempt in range(1, SCHEDULED_TRIES + 1):
        report = await world.run()
        assert (report.failed, report.waiting) == ([BLOB], 1)
        failure = world.record(f"{BLOB}.failed-{attempt:02d}.json")
        assert failure["try"] == attempt and "answered 503" in failure["error"]
    # The schedule leaves it now: no more tries, still counted as waiting (what the dead-letter alert sees).
    for _ in range(3):
        report = await world.run()
        assert (report.failed, report.waiting) == ([], 1)
    assert world.deliveries == SCHEDULED_TRIES
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("dead-lettered event found") for m in messages) == 1
    assert sum(m.startswith(f"dead-lettered event not redriven after {SCHEDULED_TRIES} tries") for m in messages) == 1
    # replay --deadletter tries it once more, whatever its count.
    queue.down = False
    report = await world.run(by="replay")
    assert (report.redriven, report.waiting, report.enqueued) == ([BLOB], 0, 2)
    record = world.record(f"{BLOB}{REDRIVEN_SUFFIX}")
    assert (record["by"], record["try"]) == ("replay", SCHEDULED_TRIES + 1)
    assert world.deadletter.changed == []


async def test_with_redrive_on_schedule_off_the_timer_only_counts_what_waits() -> None:
    world = World()
    await world.dead_letter(BLOB, good())
    await world.dead_letter(BLOB.replace("0f6c", "1f6c"), refused())
    report = await world.run(redrive=False)
    assert (report.waiting, world.deliveries, world.jobs()) == (2, 0, [])
    assert sorted(world.deadletter.blobs) == sorted([BLOB, BLOB.replace("0f6c", "1f6c")])


async def test_the_listing_pairs_each_blob_with_its_records_and_ignores_orphan_records() -> None:
    world = World()
    other = BLOB.replace("0f6c", "2f6c")
    await world.dead_letter(BLOB, good())
    await world.dead_letter(other, good())
    for name in (
        f"{BLOB}.failed-01.json",
        f"{BLOB}.failed-03.json",
        f"{other}{REDRIVEN_SUFFIX}",
        "gone.json.failed-01.json",
    ):
        await world.deadletter.create(name, b"{}", "application/json")
    letters = {d.name: (d.tries, d.done) for d in await dead_letters(world.deadletter)}
    assert letters == {BLOB: (3, False), other: (0, True)}


def test_a_stored_payload_becomes_one_delivery_in_its_schema() -> None:
    body, kind = as_delivery(json.dumps(good()[0]))
    assert kind == "application/json" and len(json.loads(body)) == 1
    body, kind = as_delivery('{"specversion": "1.0", "id": "a"}\n{"specversion": "1.0", "id": "b"}\n')
    assert kind == "application/cloudevents-batch+json" and [e["id"] for e in json.loads(body)] == ["a", "b"]
    with pytest.raises(ValueError):
        as_delivery("not json at all")
