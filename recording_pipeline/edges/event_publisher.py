"""Outbound events to an Event Grid topic, as CloudEvents 1.0, with azure-eventgrid's async publisher client.

The client's own retry policy (azure-core: 408, 429, 5xx and connection errors,
with exponential backoff) is kept short, because a failure is not the end: the
caller keeps undelivered events in the outbox and delivers them again later.
Every failure leaves as a PublishError. In Azure the app's managed identity
publishes (Entra ID token for ``https://eventgrid.azure.net/.default``, the
client's default scope); an access key only where a topic still takes one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent
from azure.eventgrid.aio import EventGridPublisherClient

from recording_pipeline.core.errors import PublishError
from recording_pipeline.core.outbound import OutboundEvent
from recording_pipeline.core.settings import OutboundEventsSettings

RETRIES = 3  # then the outbox: a topic down for minutes must not hold a chunk's message
TIMEOUT_SECONDS = 10


class EventGridPublisher:
    """One client per process; ``publish`` sends one batch (the service takes up to 1 MB a request)."""

    def __init__(self, client: EventGridPublisherClient, endpoint: str) -> None:
        self._client = client
        self.endpoint = endpoint

    @classmethod
    def open(cls, settings: OutboundEventsSettings, credential: Any = None) -> EventGridPublisher:
        assert settings.endpoint is not None
        auth: Any = AzureKeyCredential(settings.access_key) if settings.access_key else credential
        if auth is None:
            raise PublishError("publishing with the managed identity needs a credential")
        client = EventGridPublisherClient(
            settings.endpoint,
            auth,
            retry_total=RETRIES,
            retry_backoff_factor=0.5,
            retry_backoff_max=5,
            connection_timeout=TIMEOUT_SECONDS,
            read_timeout=TIMEOUT_SECONDS,
        )
        return cls(client, settings.endpoint)

    async def publish(self, events: Sequence[OutboundEvent]) -> None:
        if not events:
            return
        batch = [
            CloudEvent(
                source=e.source,
                type=e.type.value,
                data=e.data,
                subject=e.subject,
                id=e.id,
                time=e.time,
                datacontenttype="application/json",
            )
            for e in events
        ]
        try:
            await self._client.send(batch)
        except AzureError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            raise PublishError(f"{type(exc).__name__}{f' ({status})' if status else ''}: {_first_line(exc)}") from None

    async def close(self) -> None:
        await self._client.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
