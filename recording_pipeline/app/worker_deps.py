"""ChunkWorker: the one object of what the worker, its attempts and their steps depend on, built once per process.

Every step reads its edges and settings from here (``ChunkRun.deps``); nothing is
copied out of it per attempt. It also holds what one process keeps across
attempts: the last version of each manifest it wrote (``manifests``) and the
index entries (participants, days) it knows exist (``index_entries``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from recording_pipeline.app.manifests import ManifestWriter
from recording_pipeline.app.outbound import OutboundEvents
from recording_pipeline.app.recording_index import DayIndex
from recording_pipeline.app.transfer import MIB, PROCESS_BUFFER_BUDGET
from recording_pipeline.core.attempts import AttemptPolicy
from recording_pipeline.core.ports import ArchiveStore, ChunkQueue, RecordingSource, StateStore

log = logging.getLogger(__name__)


class KnownBlobs:
    """Names of write-once blobs this process knows exist (it created them, or was told they existed): they
    cannot disappear, so they need not be created again. Bounded: the oldest are forgotten first."""

    def __init__(self, limit: int = 16384) -> None:
        self._names: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def add(self, name: str) -> None:
        self._names[name] = None
        self._names.move_to_end(name)
        while len(self._names) > self._limit:
            self._names.popitem(last=False)


@dataclass
class ChunkWorker:
    """What the worker and its steps use: the edges, the settings of a copy, the attempt policy, and what the
    process remembers between attempts. Built once per process, by keyword (runtime.py)."""

    acs: RecordingSource
    archive: ArchiveStore  # the write-once archive container
    state: StateStore  # the state container: manifests, locks, quarantine
    queue: ChunkQueue
    block_size: int
    concurrency: int
    policy: AttemptPolicy
    attempt_seconds: float | None = None  # an attempt ends itself after this (inside the host's functionTimeout)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ready: Callable[[], Awaitable[None]] | None = None  # once per process: the container and queues exist
    events: OutboundEvents | None = None  # the Event Grid topic, when OUTBOUND_EVENTS_TOPIC_ENDPOINT is set
    manifests: ManifestWriter = field(init=False)
    index_entries: KnownBlobs = field(init=False, default_factory=KnownBlobs)

    def __post_init__(self) -> None:
        self.manifests = ManifestWriter(self.state, DayIndex(self.archive, self.index_entries))
        if self.block_size * 2 > PROCESS_BUFFER_BUDGET:
            log.warning(
                "blocks of %d MiB leave room for fewer than 2 in the process's %d MiB buffer budget: "
                "downloads and uploads will not overlap",
                self.block_size // MIB,
                PROCESS_BUFFER_BUDGET // MIB,
            )
