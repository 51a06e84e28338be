"""Outbound events: published when an attempt's outcome is known, kept in the outbox when they cannot be.

Publishing never holds up archiving: it happens after the chunk's work is done,
and a topic that fails (after the client's retries) costs one write per event to
the state container's outbox (``_outbox/{id}.json``, never the write-once archive);
``redeliver`` publishes what waits there again, on a timer. An event is removed
from the outbox only after the topic took it, so delivery is at least once; ids
are deterministic (core.outbound), so a subscriber deduplicates on ``id``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from recording_pipeline.core.errors import InvalidEventError, PublishError
from recording_pipeline.core.naming import OUTBOX_PREFIX, outbox_name
from recording_pipeline.core.outbound import OutboundEvent
from recording_pipeline.core.ports import EventPublisher, StateStore
from recording_pipeline.edges.telemetry import EVENTS_PUBLISHED, span_attributes, tracer

log = logging.getLogger(__name__)

JSON = "application/json"
REDELIVERY_BATCH = 100  # events per request when the outbox is emptied (each is ~1-4 KB; a request takes 1 MB)


def _count(events: Sequence[OutboundEvent], result: str) -> None:
    for kind, n in Counter(e.type.value for e in events).items():
        EVENTS_PUBLISHED.add(n, {"type": kind, "result": result})


@dataclass
class OutboundEvents:
    """The topic, and the outbox in the state container for what the topic would not take."""

    publisher: EventPublisher
    state: StateStore
    archive_url: str  # the archive container's URL: the events' source, and the base of their blob URLs

    async def emit(self, events: Sequence[OutboundEvent]) -> None:
        """Publish, or keep every event in the outbox. Raises only if it could do neither."""
        if not events:
            return
        try:
            with tracer.start_as_current_span("events.publish", attributes=span_attributes()) as span:
                span.set_attribute("events.types", sorted({e.type.value for e in events}))
                await self.publisher.publish(events)
            _count(events, "delivered")
            return
        except PublishError as exc:
            problem = exc
        await asyncio.gather(*(self.state.create(outbox_name(e.id), e.to_json(), JSON) for e in events))
        _count(events, "kept")
        log.error(
            "outbound event kept for redelivery (%s): %s",
            ", ".join(e.type.value for e in events),
            problem,
            extra={"event_ids": [e.id for e in events]},
        )

    async def redeliver(self, limit: int = 10 * REDELIVERY_BATCH) -> int:
        """Publish what waits in the outbox, oldest names first, a batch at a time; each leaves only once taken."""
        names = []
        async for name in self.state.list_names(OUTBOX_PREFIX):
            names.append(name)
            if len(names) >= limit:
                break
        delivered = 0
        for start in range(0, len(names), REDELIVERY_BATCH):
            batch: list[tuple[str, OutboundEvent]] = []
            for name in names[start : start + REDELIVERY_BATCH]:
                found = await self.state.read_bytes(name)
                if found is None:  # another instance delivered it meanwhile
                    continue
                try:
                    batch.append((name, OutboundEvent.from_json(found[0])))
                except InvalidEventError as exc:
                    log.error("%s is not an outbound event, left where it is: %s", name, exc)
            if not batch:
                continue
            try:
                await self.publisher.publish([event for _, event in batch])
            except PublishError as exc:
                log.warning("outbox: %d event(s) still undelivered: %s", len(names) - delivered, exc)
                break
            await asyncio.gather(*(self.state.delete(name) for name, _ in batch))
            _count([event for _, event in batch], "redelivered")
            delivered += len(batch)
        if delivered:
            log.info("outbox: redelivered %d event(s)", delivered)
        return delivered
