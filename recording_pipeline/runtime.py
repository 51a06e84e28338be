"""Runtime: every client the handlers need, built once per process from Settings.

One aiohttp session, one blob service client, one queue service client, one
credential; the handlers receive them as arguments, never as module globals.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from .acs import AcsRecordingClient, EntraTokenProvider
from .archive import ArchiveStore
from .audit import ArchiveAudit
from .chunk_queue import ChunkQueue
from .delivery_auth import EntraDeliveryValidator
from .retry import RetryPolicy
from .settings import Settings
from .urls import UrlPolicy
from .webhook import WebhookConfig
from .worker import ChunkWorker

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    session: aiohttp.ClientSession
    store: ArchiveStore
    queue: ChunkQueue
    acs: AcsRecordingClient
    worker: ChunkWorker
    audit: ArchiveAudit
    webhook: WebhookConfig
    _credential: Any = None

    @classmethod
    async def start(cls, settings: Settings, retry: RetryPolicy | None = None, ensure: bool = True) -> Runtime:
        credential = None
        if (
            settings.acs.access_key is None
            or not settings.archive.connection_string
            or not (settings.queue.connection_string)
        ):
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, enable_cleanup_closed=True),
            auto_decompress=False,
        )
        policy = UrlPolicy(settings.allowed_hosts, settings.allow_http, settings.acs.endpoint_host)
        tokens = EntraTokenProvider(credential) if settings.acs.access_key is None else None
        acs = AcsRecordingClient(
            session, settings.acs, policy, tokens, retry, read_timeout=settings.acs_read_timeout_seconds
        )
        store = ArchiveStore(_blob_service(settings, credential), settings.archive_container)
        queue = ChunkQueue(_queue_service(settings, credential), settings.chunk_queue_name)
        worker = ChunkWorker(
            acs,
            store,
            queue,
            settings.block_size,
            settings.transfer_concurrency,
            settings.max_dequeue_count,
            settings.requeue_delay_seconds,
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
        if ensure:
            try:
                await asyncio.gather(store.ensure_container(), queue.ensure())
            except BaseException:
                await runtime.close()
                raise
        return runtime

    async def close(self) -> None:
        await asyncio.gather(self.store.close(), self.queue.close(), self.session.close(), return_exceptions=True)
        if self._credential is not None:
            await self._credential.close()


def _blob_service(settings: Settings, credential: Any) -> BlobServiceClient:
    if settings.archive.connection_string:
        return BlobServiceClient.from_connection_string(settings.archive.connection_string, use_env_settings=False)
    return BlobServiceClient(str(settings.archive.account_url), credential=credential, use_env_settings=False)


def _queue_service(settings: Settings, credential: Any) -> QueueServiceClient:
    if settings.queue.connection_string:
        return QueueServiceClient.from_connection_string(settings.queue.connection_string, use_env_settings=False)
    return QueueServiceClient(str(settings.queue.account_url), credential=credential, use_env_settings=False)
