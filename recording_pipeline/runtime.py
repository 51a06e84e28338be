"""Runtime: every client the handlers need, built once per process from Settings.

One aiohttp session, one blob service client, one queue service client, one
credential; the handlers receive them as arguments, never as module globals.
``open_archive`` and ``open_queue`` build one edge alone, for the operator
commands, which need no ACS credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from recording_pipeline.app.audit import ArchiveAudit
from recording_pipeline.app.outbound import OutboundEvents
from recording_pipeline.app.webhook import WebhookConfig
from recording_pipeline.app.worker import ChunkWorker
from recording_pipeline.core.attempts import AttemptPolicy
from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.host_rules import HostRules, QueueRules
from recording_pipeline.core.settings import ArchiveSettings, QueueSettings, Settings, StorageTarget
from recording_pipeline.edges.acs import AcsRecordingClient, EntraTokenProvider
from recording_pipeline.edges.archive import BlobArchive
from recording_pipeline.edges.chunk_queue import StorageChunkQueue
from recording_pipeline.edges.client_limits import ARCHIVE, QUEUE
from recording_pipeline.edges.delivery_auth import EntraDeliveryValidator
from recording_pipeline.edges.event_publisher import EventGridPublisher
from recording_pipeline.edges.retry import RetryPolicy
from recording_pipeline.edges.worm_probe import ContainerWormProbe

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    session: aiohttp.ClientSession
    archive: BlobArchive  # the write-once archive container
    state: BlobArchive  # the state container beside it
    queue: StorageChunkQueue
    acs: AcsRecordingClient
    worker: ChunkWorker
    audit: ArchiveAudit
    webhook: WebhookConfig
    publisher: EventGridPublisher | None = None
    _credential: Any = None
    _ready: asyncio.Task[None] | None = None
    deadletter: BlobArchive | None = None  # Event Grid's dead-letter container (app.deadletter)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        host: HostRules | None = None,
        retry: RetryPolicy | None = None,
        ensure: bool = True,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Runtime:
        """build(), then (``ensure``) make sure the container and queues exist; closed again if that fails."""
        runtime = await cls.build(settings, host, retry, ensure, storage_options)
        if ensure:
            try:
                await runtime.ready()
            except BaseException:
                await runtime.close()
                raise
        return runtime

    @classmethod
    async def build(
        cls,
        settings: Settings,
        host: HostRules | None = None,
        retry: RetryPolicy | None = None,
        ensure: bool = True,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Runtime:
        """Every client, with no network I/O (in the event loop that will use them).

        Whatever was built is closed again if anything fails, so a start that keeps failing leaks no
        session or credential. ``host``: the Functions host's rules (default: host.json's defaults).
        ``ensure``: attempts first make sure the container and queues exist (once per process).
        ``storage_options``: keyword arguments for the storage clients (see ``open_archive``).
        """
        options = dict(storage_options or {})
        host = host or HostRules(function_timeout=None, queues=QueueRules())
        retry = retry or RetryPolicy(**asdict(settings.acs.retry))
        credentials = settings.acs.credentials
        opened: list[Any] = []
        try:
            events = settings.events
            identity = (
                credentials.access_key is None
                or needs_identity(settings.archive.target, settings.queue.target)
                or (events.enabled and events.access_key is None)
            )
            credential = _credential() if identity else None
            opened.append(credential)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, enable_cleanup_closed=True),
                auto_decompress=False,
            )
            opened.append(session)
            policy = settings.url_policy
            tokens = EntraTokenProvider(credential) if credentials.access_key is None else None
            acs = AcsRecordingClient(
                session, credentials, policy, tokens, retry, read_timeout=settings.acs.read_timeout_seconds
            )
            archive = open_archive(settings.archive, credential, **options)
            opened.append(archive)
            state = open_state(settings.archive, credential, **options)
            opened.append(state)
            queue = open_queue(settings.queue, credential, **options)
            opened.append(queue)
            publisher = EventGridPublisher.open(events, credential) if events.enabled else None
            opened.append(publisher)
            deadletter = open_deadletter(settings, credential)
            opened.append(deadletter)
            worker = ChunkWorker(
                acs=acs,
                archive=archive,
                state=state,
                queue=queue,
                block_size=settings.transfer.block_size,
                concurrency=settings.transfer.concurrency,
                policy=AttemptPolicy(host.attempts_per_message, settings.queue.requeue_delay_seconds),
                attempt_seconds=host.attempt_seconds(),
                events=OutboundEvents(publisher, state, archive.url) if publisher else None,
            )
            webhook_settings = settings.webhook
            entra = webhook_settings.entra
            delivery_auth = (
                EntraDeliveryValidator(session, entra.tenant_id, entra.audience, entra.jwks_url) if entra else None
            )
            webhook = WebhookConfig(
                credentials.endpoint,
                webhook_settings.retention_hours,
                policy,
                webhook_settings.acs_resource_id,
                webhook_settings.max_body_bytes,
                webhook_settings.max_events,
                delivery_auth,
            )
            audit = ArchiveAudit(archive, state)
            runtime = cls(settings, session, archive, state, queue, acs, worker, audit, webhook, publisher, credential)
            runtime.deadletter = deadletter
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
        await asyncio.gather(self.archive.ensure(), self.state.ensure(), self.queue.ensure())

    @property
    def credential(self) -> Any:
        """The identity the clients use (None with connection strings and an access key)."""
        return self._credential

    async def close(self) -> None:
        await _close_all(
            [self.archive, self.state, self.queue, self.publisher, self.deadletter, self.session, self._credential]
        )


def open_archive(settings: ArchiveSettings, credential: Any = None, **options: Any) -> BlobArchive:
    """The write-once archive container alone (the operator commands); an account URL needs ``credential``.

    ``options`` go to the SDK's client as they are: the operator commands bound their waits with
    ``connection_timeout`` and ``read_timeout`` (azure-core's ``AioHttpTransport``: aiohttp's ``sock_connect`` and
    ``sock_read``; the SDK's defaults are 20 s and 60 s, azure/storage/blob/_shared/constants.py) and
    ``retry_total``, ``initial_backoff``, ``increment_base``, ``random_jitter_range`` (the SDK's
    ``ExponentialRetry``, azure/storage/blob/_shared/policies_async.py: 3 retries, 15 s + 3^n apart, by default).
    """
    return BlobArchive(_blob_service(settings.target, credential, options), settings.container)


def open_state(settings: ArchiveSettings, credential: Any = None, **options: Any) -> BlobArchive:
    """The state container beside the archive: manifests, quarantine, locks, holds."""
    return BlobArchive(_blob_service(settings.target, credential, options), settings.state_container)


def open_deadletter(settings: Settings, credential: Any = None) -> BlobArchive:
    """Event Grid's dead-letter container, in the archive account: read, and records created beside its blobs."""
    return BlobArchive(_blob_service(settings.archive.target, credential, {}), settings.deadletter.container)


def open_worm_probe(settings: ArchiveSettings, credential: Any = None, **options: Any) -> ContainerWormProbe:
    """The archive container for ``recording-archive check``, which changes its canary blob on purpose."""
    service = _blob_service(settings.target, credential, options)
    return ContainerWormProbe(service.get_container_client(settings.container), service)


def _blob_service(target: StorageTarget, credential: Any, options: Mapping[str, Any]) -> BlobServiceClient:
    """With the time limits and retries of edges.client_limits (the worker's, unless ``options`` say otherwise),
    not the SDK's."""
    options = {**ARCHIVE.options(), **options}
    with _refused_as_configuration(target):
        if target.connection_string:
            return BlobServiceClient.from_connection_string(target.connection_string, use_env_settings=False, **options)
        return BlobServiceClient(str(target.account_url), credential=credential, use_env_settings=False, **options)


def open_queue(settings: QueueSettings, credential: Any = None, **options: Any) -> StorageChunkQueue:
    """The chunk queue and its poison queue; ``options`` as for ``open_archive``."""
    target = settings.target
    options = {**QUEUE.options(), **options}
    with _refused_as_configuration(target):
        if target.connection_string:
            service = QueueServiceClient.from_connection_string(
                target.connection_string, use_env_settings=False, **options
            )
        else:
            service = QueueServiceClient(
                str(target.account_url), credential=credential, use_env_settings=False, **options
            )
    return StorageChunkQueue(service, settings.name)


@contextmanager
def _refused_as_configuration(target: StorageTarget) -> Iterator[None]:
    """What the SDK refuses to build a client from (a ValueError, core.settings checks the same first) is the
    setting's fault: said so, without the value (a connection string holds a key)."""
    try:
        yield
    except ValueError as exc:
        raise ConfigurationError(f"{target.setting or 'the storage setting'}: {exc}") from None


def needs_identity(*targets: StorageTarget) -> bool:
    return any(not t.connection_string for t in targets)


def _credential() -> Any:
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


async def _close_all(resources: Any) -> None:
    """Close each (None skipped), all of them even if some fail."""
    for resource in resources:
        if resource is None:
            continue
        try:
            await resource.close()
        except Exception as exc:  # closing is best effort; the rest must still close
            log.warning("could not close %s: %s", type(resource).__name__, exc)
