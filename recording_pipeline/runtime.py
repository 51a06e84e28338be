"""Runtime: every client the handlers need, built once per process from Settings.

One aiohttp session, one blob service client, one queue service client, one
credential; the handlers receive them as arguments, never as module globals.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from recording_pipeline.app.audit import ArchiveAudit
from recording_pipeline.app.webhook import WebhookConfig
from recording_pipeline.app.worker import ChunkWorker
from recording_pipeline.core.attempts import AttemptPolicy
from recording_pipeline.core.host_rules import HostRules, QueueRules
from recording_pipeline.core.settings import Settings
from recording_pipeline.core.urls import UrlPolicy
from recording_pipeline.edges.acs import AcsRecordingClient, EntraTokenProvider
from recording_pipeline.edges.archive import BlobArchive
from recording_pipeline.edges.chunk_queue import StorageChunkQueue
from recording_pipeline.edges.delivery_auth import EntraDeliveryValidator
from recording_pipeline.edges.retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    session: aiohttp.ClientSession
    store: BlobArchive
    queue: StorageChunkQueue
    acs: AcsRecordingClient
    worker: ChunkWorker
    audit: ArchiveAudit
    webhook: WebhookConfig
    _credential: Any = None
    _ready: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, settings: Settings, host: HostRules | None = None, retry: RetryPolicy | None = None, ensure: bool = True
    ) -> Runtime:
        """build(), then (``ensure``) make sure the container and queues exist; closed again if that fails."""
        runtime = await cls.build(settings, host, retry, ensure)
        if ensure:
            try:
                await runtime.ready()
            except BaseException:
                await runtime.close()
                raise
        return runtime

    @classmethod
    async def build(
        cls, settings: Settings, host: HostRules | None = None, retry: RetryPolicy | None = None, ensure: bool = True
    ) -> Runtime:
        """Every client, with no network I/O (in the event loop that will use them).

        Whatever was built is closed again if anything fails, so a start that keeps failing leaks no
        session or credential. ``host``: the Functions host's rules (default: host.json's defaults).
        ``ensure``: attempts first make sure the container and queues exist (once per process); operator
        commands pass False and never create anything.
        """
        host = host or HostRules(function_timeout=None, queues=QueueRules())
        retry = retry or RetryPolicy(**asdict(settings.acs_retry))
        opened: list[Any] = []
        try:
            credential = None
            if (
                settings.acs.access_key is None
                or not settings.archive.connection_string
                or not settings.queue.connection_string
            ):
                from azure.identity.aio import DefaultAzureCredential

                credential = DefaultAzureCredential()
                opened.append(credential)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, enable_cleanup_closed=True),
                auto_decompress=False,
            )
            opened.append(session)
            policy = UrlPolicy(settings.allowed_hosts, settings.allow_http, settings.acs.endpoint_host)
            tokens = EntraTokenProvider(credential) if settings.acs.access_key is None else None
            acs = AcsRecordingClient(
                session, settings.acs, policy, tokens, retry, read_timeout=settings.acs_read_timeout_seconds
            )
            store = BlobArchive(_blob_service(settings, credential), settings.archive_container)
            opened.append(store)
            queue = StorageChunkQueue(_queue_service(settings, credential), settings.chunk_queue_name)
            opened.append(queue)
            worker = ChunkWorker(
                acs,
                store,
                queue,
                settings.block_size,
                settings.transfer_concurrency,
                AttemptPolicy(host.attempts_per_message, settings.requeue_delay_seconds),
                host.attempt_seconds(),
            )
            entra = settings.entra_delivery
            delivery_auth = (
                EntraDeliveryValidator(session, entra.tenant_id, entra.audience, entra.jwks_url) if entra else None
            )
            webhook = WebhookConfig(
                settings.acs.endpoint,
                settings.retention_hours,
                policy,
                settings.acs_resource_id,
                settings.max_body_bytes,
                settings.max_events,
                delivery_auth,
            )
            runtime = cls(settings, session, store, queue, acs, worker, ArchiveAudit(store), webhook, credential)
        except BaseException:
            await _close_all(reversed(opened))
            raise
        if ensure:
            worker.ready = runtime.ready
        return runtime

    async def ready(self) -> None:
        """The archive container and the queues exist. Once per process; a failure is tried again next time."""
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.ensure_future(self._ensure())
        await asyncio.shield(self._ready)

    async def _ensure(self) -> None:
        await asyncio.gather(self.store.ensure(), self.queue.ensure())

    async def close(self) -> None:
        await _close_all([self.store, self.queue, self.session, self._credential])


async def _close_all(resources: Any) -> None:
    """Close each (None skipped), all of them even if some fail."""
    for resource in resources:
        if resource is None:
            continue
        try:
            await resource.close()
        except Exception as exc:  # closing is best effort; the rest must still close
            log.warning("could not close %s: %s", type(resource).__name__, exc)


def _blob_service(settings: Settings, credential: Any) -> BlobServiceClient:
    if settings.archive.connection_string:
        return BlobServiceClient.from_connection_string(settings.archive.connection_string, use_env_settings=False)
    return BlobServiceClient(str(settings.archive.account_url), credential=credential, use_env_settings=False)


def _queue_service(settings: Settings, credential: Any) -> QueueServiceClient:
    if settings.queue.connection_string:
        return QueueServiceClient.from_connection_string(settings.queue.connection_string, use_env_settings=False)
    return QueueServiceClient(str(settings.queue.account_url), credential=credential, use_env_settings=False)
