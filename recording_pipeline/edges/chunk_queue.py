"""StorageChunkQueue: the Storage queue of RecordingChunk jobs and its poison queue.

Implements core.ports.ChunkQueue. Messages are base64-encoded text, which is
what the Functions queue trigger decodes by default (host.json
``extensions.queues.messageEncoding``); a test reads host.json to keep the two
in step. Every Azure SDK error leaves as a StorageError.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueMessage, TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from recording_pipeline.core.jobs import RecordingChunk, encode_job
from recording_pipeline.core.quarantine import QuarantineRecord
from recording_pipeline.core.settings import POISON_SUFFIX
from recording_pipeline.edges.storage_errors import create_if_missing, storage_errors

MESSAGE_ENCODING = "base64"
NEVER_EXPIRES = -1  # time_to_live: Put Message's messagettl=-1
MAX_DELAY_SECONDS = 7 * 86400  # the longest a message may stay invisible
POISON_HIDE_SECONDS = 300  # a poison message being re-driven is hidden this long from another replay
_SEND_CONCURRENCY = 64


@dataclass
class _PoisonMessage:
    content: str
    _client: QueueClient
    _message: QueueMessage

    async def remove(self) -> None:
        with storage_errors(f"remove a message of {self._client.queue_name}"):
            await self._client.delete_message(self._message)


class StorageChunkQueue:
    def __init__(self, service: QueueServiceClient, name: str) -> None:
        self._service = service
        self.name = name
        self.poison_name = f"{name}{POISON_SUFFIX}"
        self._jobs = self._client(name)
        self._poison = self._client(self.poison_name)

    def _client(self, name: str) -> QueueClient:
        return self._service.get_queue_client(
            name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
        )

    async def ensure(self) -> None:
        for client in (self._jobs, self._poison):
            await create_if_missing(client.create_queue(), f"queue {client.queue_name}")

    async def close(self) -> None:
        await self._service.close()

    async def enqueue(self, jobs: Sequence[RecordingChunk]) -> int:
        """Put every job on the queue; raises if any send fails (the caller answers 5xx).

        A fixed pool of senders drains the list (a task per sender, not per message), and the first failure
        stops the others: the delivery is answered 503 and retried whole, so sending the rest would be waste.
        """
        texts = [encode_job(job) for job in jobs]
        remaining = iter(texts)  # shared: each text is taken by exactly one sender

        async def sender() -> None:
            for text in remaining:
                with storage_errors(f"send to {self.name}"):
                    await self._jobs.send_message(text)

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
        with storage_errors(f"send to {self.name}"):
            await self._jobs.send_message(
                encode_job(job), visibility_timeout=max(0, min(delay_seconds, MAX_DELAY_SECONDS))
            )

    async def send_poison(self, record: QuarantineRecord) -> None:
        """Quarantine a job with its last error, for ``replay --poison``. The message never expires: it is the
        record an operator acts on (a queue's default time-to-live is 7 days)."""
        with storage_errors(f"send to {self.poison_name}"):
            await self._poison.send_message(record.to_json().decode(), time_to_live=NEVER_EXPIRES)

    async def poison_messages(self, limit: int) -> AsyncIterator[_PoisonMessage]:
        seen = 0
        while seen < limit:
            with storage_errors(f"read {self.poison_name}"):
                try:
                    batch = [
                        m
                        async for m in self._poison.receive_messages(
                            max_messages=32, visibility_timeout=POISON_HIDE_SECONDS
                        )
                    ]
                except ResourceNotFoundError:
                    return
            if not batch:
                return
            for message in batch[: limit - seen]:
                seen += 1
                yield _PoisonMessage(str(message.content), self._poison, message)

    async def job_count(self) -> int:
        """The chunk queue's approximate length (0 while it does not exist yet): ``check`` reads it."""
        return await _length(self._jobs)

    async def poison_count(self) -> int:
        return await _length(self._poison)


async def _length(queue: QueueClient) -> int:
    """A queue's approximate number of messages; 0 for a queue not made yet (the app makes it on first use)."""
    with storage_errors(f"properties of {queue.queue_name}"):
        try:
            props = await queue.get_queue_properties()
        except ResourceNotFoundError:
            return 0
    return int(props.approximate_message_count or 0)
