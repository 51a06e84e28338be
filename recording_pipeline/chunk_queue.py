"""ChunkQueue: the Storage queue of RecordingChunk jobs and its poison queue.

Messages are base64-encoded text, which is what the Functions queue trigger
decodes by default (host.json ``extensions.queues.messageEncoding``); a test
reads host.json to keep the two in step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from azure.storage.queue import QueueMessage, TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from .archive import create_if_missing
from .jobs import RecordingChunk, encode_job
from .quarantine import QuarantineRecord
from .settings import POISON_SUFFIX

MESSAGE_ENCODING = "base64"
NEVER_EXPIRES = -1  # time_to_live: Put Message's messagettl=-1
_SEND_CONCURRENCY = 64


class ChunkQueue:
    def __init__(self, service: QueueServiceClient, name: str) -> None:
        self._service = service
        self.name = name
        self.poison_name = f"{name}{POISON_SUFFIX}"
        self.jobs = self._client(name)
        self.poison = self._client(self.poison_name)

    def _client(self, name: str) -> QueueClient:
        return self._service.get_queue_client(
            name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
        )

    async def ensure(self) -> None:
        for client in (self.jobs, self.poison):
            await create_if_missing(client.create_queue(), f"queue {client.queue_name}")

    async def close(self) -> None:
        await self._service.close()

    async def enqueue(self, jobs: Iterable[RecordingChunk]) -> int:
        """Put every job on the queue; raises if any send fails (the caller answers 5xx).

        A fixed pool of senders drains the list (a task per sender, not per message), and the first failure
        stops the others: the delivery is answered 503 and retried whole, so sending the rest would be waste.
        """
        texts = [encode_job(job) for job in jobs]
        remaining = iter(texts)  # shared: each text is taken by exactly one sender

        async def sender() -> None:
            for text in remaining:
                await self.jobs.send_message(text)

        senders = [asyncio.create_task(sender()) for _ in range(min(_SEND_CONCURRENCY, len(texts)))]
        try:
            await asyncio.gather(*senders)
        except BaseException:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            raise
        return len(texts)

    async def enqueue_later(self, job: RecordingChunk, delay_seconds: int) -> None:
        """Put ``job`` back on the queue, invisible for ``delay_seconds`` (at most 7 days)."""
        await self.jobs.send_message(encode_job(job), visibility_timeout=max(0, min(delay_seconds, 7 * 86400)))

    async def send_poison(self, record: QuarantineRecord) -> None:
        """Quarantine a job with its last error, for ``replay --poison``. The message never expires: it is the
        record an operator acts on (a queue's default time-to-live is 7 days)."""
        await self.poison.send_message(record.to_json().decode(), time_to_live=NEVER_EXPIRES)

    async def receive(self, max_messages: int, visibility_timeout: int) -> list[QueueMessage]:
        batch: list[QueueMessage] = []
        async for message in self.jobs.receive_messages(
            messages_per_page=max_messages, max_messages=max_messages, visibility_timeout=visibility_timeout
        ):
            batch.append(message)
        return batch

    async def hide(self, message: QueueMessage, seconds: int) -> QueueMessage:
        """Extend (or set) how long ``message`` stays invisible; returns it with its new pop receipt."""
        updated = await self.jobs.update_message(message, visibility_timeout=seconds)
        message.pop_receipt = updated.pop_receipt
        message.next_visible_on = updated.next_visible_on
        return message

    async def delete(self, message: QueueMessage) -> None:
        await self.jobs.delete_message(message)
