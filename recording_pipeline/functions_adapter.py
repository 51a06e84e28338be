"""What the Azure Functions adapter (function_app.py) needs besides the bindings.

- The app's configuration is read once, at import: settings from the app
  settings, and the host's rules from host.json beside function_app.py with
  their ``AzureFunctionsJobHost__`` overrides. If it cannot be used (a missing
  setting, or a Key Vault reference the platform has not resolved yet),
  function_app.py declares no queue trigger, so the host takes no message and
  counts no delivery against any job, and the webhook answers 503, so Event Grid
  keeps every event and retries (up to 24 hours). Failing the import instead
  would leave the host with no functions at all: routes answer 404 and nothing
  says why (azure-functions-python-worker, ``functions_metadata_request``).
- The Runtime is built on first use, inside the worker's event loop, and then
  reused by every invocation: one aiohttp session and one set of storage clients
  per process (the Python worker gives no start-up hook).
- Every handler here runs inside ``app.boundary.contained``: nothing but an
  Exception, the process's own shutdown or the worker cancelling the invocation
  leaves it, so the runtime always answers the host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recording_pipeline.app import fixity
from recording_pipeline.app.boundary import contained
from recording_pipeline.app.deadletter import DeadLetterReport, redrive_dead_letters, webhook_path
from recording_pipeline.app.webhook import WebhookRequest, WebhookResponse, handle_delivery
from recording_pipeline.app.worker import Outcome, handle_chunk_message
from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.host_rules import HostRules, read_host_rules
from recording_pipeline.core.settings import Settings
from recording_pipeline.edges.telemetry import DEADLETTER_WAITING, POISON_DEPTH
from recording_pipeline.runtime import Runtime

log = logging.getLogger(__name__)

CONFIGURATION_RETRY_AFTER = "300"
# Every 5 minutes (NCRONTAB: second minute hour day month day-of-week): one Get Queue Metadata, and one blob
# listing of the outbox when publishing is on; about 8,600 requests a month each.
POISON_DEPTH_SCHEDULE = "0 */5 * * * *"
REDELIVERY_SCHEDULE = "30 */5 * * * *"
# One listing of the dead-letter container; a blob found costs its read, the webhook path's writes and one record.
DEADLETTER_SCHEDULE = "15 */5 * * * *"
# Every hour, at 20 past: the fixity audit's slice, FIXITY_BYTES_PER_DAY / 24 (app/fixity, docs/FIXITY.md).
FIXITY_SCHEDULE = fixity.SCHEDULE


@dataclass(frozen=True)
class AppConfig:
    settings: Settings
    host: HostRules


def load_app_config(app_root: Path, env: Mapping[str, str] | None = None) -> AppConfig | ConfigurationError:
    """The configuration, or the error that keeps the app from working (logged here, loudly)."""
    try:
        return AppConfig(Settings.from_env(env), read_host_rules(app_root, env))
    except ConfigurationError as exc:
        log.critical("configuration error; the chunk queue is not read until it is fixed: %s", exc)
        return exc


class RuntimeHolder:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._runtime: Runtime | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> Runtime:
        if self._runtime is not None:
            return self._runtime
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._runtime is None:
                self._runtime = await Runtime.build(self.config.settings, self.config.host)
        return self._runtime


async def deliver(app: RuntimeHolder | ConfigurationError, request: WebhookRequest) -> WebhookResponse:
    """The webhook, or 503 while the app cannot work: Event Grid retries 5xx, and keeps what it gives up on."""
    if isinstance(app, ConfigurationError):
        log.error("refused a delivery with 503: configuration error: %s", app)
        return WebhookResponse(
            503, {"error": f"configuration error: {app}"}, {"Retry-After": CONFIGURATION_RETRY_AFTER}
        )
    with contained("the webhook"):
        runtime = await app.get()
        try:
            await runtime.ready()
        except Exception as exc:
            log.error("the queue or the archive is unavailable; Event Grid will retry: %s: %s", type(exc).__name__, exc)
            return WebhookResponse(503, {"error": "the chunk queue or the archive is unavailable; retry later"})
        return await handle_delivery(request, runtime.webhook, runtime.queue, runtime.audit)


async def archive_message(
    app: RuntimeHolder, text: str, dequeue_count: int, message_id: str | None = None
) -> Outcome | None:
    with contained("the chunk message"):
        runtime = await app.get()
        return await handle_chunk_message(text, dequeue_count, runtime.worker, message_id)


async def report_poison_depth(app: RuntimeHolder) -> int:
    """The poison queue's length as a gauge (and a log line), for the dashboard and the poison alert."""
    with contained("the poison queue's depth"):
        return await _report_poison_depth(app)


async def _report_poison_depth(app: RuntimeHolder) -> int:
    runtime = await app.get()
    depth = await runtime.queue.poison_count()
    POISON_DEPTH.set(depth, {"queue": runtime.queue.poison_name})
    log.info(
        "poison queue depth: %d in %s",
        depth,
        runtime.queue.poison_name,
        extra={"poison_depth": depth, "poison_queue": runtime.queue.poison_name},
    )
    return depth


async def audit_fixity(app: RuntimeHolder) -> fixity.FixityRun:
    """A slice of the archive proved again, from where the last run stopped (app/fixity)."""
    with contained("the fixity audit"):
        runtime = await app.get()
        budget = fixity.Budget(app.config.settings.fixity.bytes_per_day, fixity.RUN_INTERVAL_SECONDS)
        return await fixity.run_fixity_audit(runtime.archive, runtime.state, budget)


async def redeliver_outbound_events(app: RuntimeHolder) -> int:
    """Publish again what the topic did not take when it happened (app.outbound)."""
    with contained("the outbound redelivery"):
        runtime = await app.get()
        events = runtime.worker.events
        return await events.redeliver() if events is not None else 0


async def redrive_dead_letters_on_schedule(app: RuntimeHolder) -> DeadLetterReport:
    """Redrive what Event Grid dead-lettered through the webhook's path (app.deadletter), or with
    DEADLETTER_REDRIVE_ON_SCHEDULE off only count it; what still waits is a gauge and a log line (the alert's)."""
    with contained("the dead-letter redrive"):
        return await _redrive_dead_letters(app)


async def _redrive_dead_letters(app: RuntimeHolder) -> DeadLetterReport:
    runtime = await app.get()
    settings = runtime.settings.deadletter
    assert runtime.deadletter is not None
    if settings.redrive_on_schedule:
        await runtime.ready()  # the webhook path writes the queue and the archive
    deliver = webhook_path(runtime.webhook, runtime.queue, runtime.audit)
    report = await redrive_dead_letters(runtime.deadletter, deliver, "schedule", settings.redrive_on_schedule)
    DEADLETTER_WAITING.set(report.waiting, {"container": settings.container})
    off = "" if settings.redrive_on_schedule else "; redrive on schedule is off: recording-archive replay --deadletter"
    log.log(
        logging.WARNING if report.waiting else logging.INFO,
        "dead-letter container %s: %d blob(s) waiting, %d redriven, %d refused again, %d failed%s",
        settings.container,
        report.waiting,
        len(report.redriven),
        len(report.refused),
        len(report.failed),
        off,
        extra={"deadletter_waiting": report.waiting, "deadletter_container": settings.container},
    )
    return report
