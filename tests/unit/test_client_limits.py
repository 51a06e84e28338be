"""The storage clients' time limits: inside what the host and Event Grid allow, and as the README states them."""

from __future__ import annotations

from typing import Any

from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from recording_pipeline.app.webhook import WRITE_SECONDS
from recording_pipeline.core.host_rules import read_host_rules
from recording_pipeline.core.settings import ArchiveSettings, QueueSettings, StorageTarget
from recording_pipeline.edges.client_limits import ARCHIVE, QUEUE
from recording_pipeline.runtime import open_archive, open_queue
from tests.support.stack import REPO

EVENT_GRID_WAIT_SECONDS = 30  # Event Grid treats a delivery unanswered after 30 s as failed


def test_the_queue_s_worst_request_fits_in_the_webhook_s_writes_and_those_in_event_grid_s_wait() -> None:
    assert QUEUE.worst_case_seconds() < WRITE_SECONDS < EVENT_GRID_WAIT_SECONDS


def test_the_archive_s_worst_request_is_minutes_not_the_function_timeout() -> None:
    attempt = read_host_rules(REPO, {}).attempt_seconds()
    assert attempt is not None and ARCHIVE.worst_case_seconds() < 300 < attempt


def _applied(client: BlobServiceClient | QueueServiceClient) -> tuple[float, float, int, float, float]:
    """What a built client really uses: its transport's timeouts and its retry policy (read from the SDK's
    objects, so a keyword the SDK stops honouring fails here)."""
    transport: Any = client._pipeline._transport
    retry: Any = client._config.retry_policy
    config = transport.connection_config
    return config.timeout, config.read_timeout, retry.total_retries, retry.initial_backoff, retry.increment_base


def test_the_clients_the_runtime_builds_carry_the_limits() -> None:
    target = StorageTarget(connection_string="UseDevelopmentStorage=true")
    archive = open_archive(ArchiveSettings(target=target, container="rec", state_container="rec-state"))
    queue = open_queue(QueueSettings(target=target, name="chunks", requeue_delay_seconds=300))
    assert _applied(archive._service) == (10, 60, 3, 1, 2)
    assert _applied(queue._service) == (5, 5, 2, 0.5, 2)


def test_the_readme_states_the_limits_as_they_are() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Time limits") : readme.index("Not promised:")]
    archive_row = next(line for line in section.splitlines() if line.startswith("| archive and state"))
    queue_row = next(line for line in section.splitlines() if line.startswith("| chunk queue"))
    waits = ", ".join(f"{w:g}" for w in ARCHIVE.waits())
    assert f"| {ARCHIVE.connect_seconds:g} s | {ARCHIVE.read_seconds:g} s" in archive_row
    assert f"{ARCHIVE.retries}, after ~{waits} s" in archive_row
    assert f"| {QUEUE.connect_seconds:g} s | {QUEUE.read_seconds:g} s |" in queue_row
    assert f"{QUEUE.retries}, after ~{', '.join(f'{w:g}' for w in QUEUE.waits())} s" in queue_row
    assert f"{WRITE_SECONDS:g} s in all" in section
