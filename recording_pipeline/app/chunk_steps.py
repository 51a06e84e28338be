"""What the steps of core.lifecycle share: one attempt's run, the lease, the timings.

One ChunkRun per attempt holds what the steps learn on the way (the metadata
document, the media blob's name and properties, the transfer's result). The
steps themselves are in ``copy_steps`` (up to the custody record),
``after_copy_steps`` (the index, the DELETE, the recording's state) and
``gone_steps`` (ACS answered 404); ``app.attempt.STEPS`` maps each Step to the one
that performs it. The order of steps is not decided here: the attempt asks
``next_step``.

Everything written to the archive is created once and never changed: the
metadata document, the media (one Put Block List with its metadata and index
tag), the chain-of-custody record, the participant index, the source-deleted
and lost records. What changes — the recording's manifest, the lock — lives in
the state store.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from recording_pipeline.app.transfer import TransferResult
from recording_pipeline.app.worker_deps import ChunkWorker
from recording_pipeline.core.attempts import AttemptProgress
from recording_pipeline.core.custody import CustodyRecord, SourceDeletedRecord
from recording_pipeline.core.errors import ArchiveIntegrityError, RecordingGoneError
from recording_pipeline.core.jobs import RecordingChunk
from recording_pipeline.core.metadata import ChunkMetadata
from recording_pipeline.core.naming import custody_name, lock_name, metadata_name
from recording_pipeline.core.ports import BlobInfo
from recording_pipeline.core.state import Manifest

log = logging.getLogger(__name__)

JSON = "application/json"
LEASE_SECONDS = 15  # the shortest the service allows: a dead worker's lease frees up soon
# A lease nobody renews expires within LEASE_SECONDS (a crashed worker, whose message is very likely the one being
# processed now), so only one held throughout this long proves a live worker, whose own queue message is in flight.
LEASE_WAIT_SECONDS = 2 * LEASE_SECONDS + 5
# Another attempt's claim younger than this may be a copy of one block in progress, without a lease: a duplicate
# leaves it to the claimer and checks again later. Older, the claimer has finished, taken the lease, or died.
CLAIM_SECONDS = 60
LEASE_AFTER_SECONDS = CLAIM_SECONDS / 2  # a claimed copy still running after this takes the lease


@dataclass
class ChunkRun:
    """One attempt at one chunk: what its steps have learned so far."""

    job: RecordingChunk
    deps: ChunkWorker
    progress: AttemptProgress = field(default_factory=AttemptProgress)
    first_delivery: bool = False  # the message's first delivery, never requeued: the archive is almost surely empty
    message_id: str | None = None  # the queue message's id: the claim names it
    metadata: ChunkMetadata | None = None
    media_blob: str = ""
    content_type: str = ""
    info: BlobInfo | None = None
    result: TransferResult | None = None
    custody: CustodyRecord | None = None
    archived_here: bool = False
    committed_here: bool = False
    started: datetime | None = None
    finished: datetime | None = None
    deleted_at: datetime | None = None
    source_deleted: SourceDeletedRecord | None = None  # written with the state, once ACS has answered the DELETE
    gone: RecordingGoneError | None = None
    manifest: Manifest | None = None  # as the RECORD step left it: the worker reports what it says
    lease_scope: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def meta_blob(self) -> str:
        return metadata_name(self.job.stem)

    async def read_custody(self) -> CustodyRecord | None:
        """The chunk's chain-of-custody record, if one was written (by any attempt)."""
        found = await self.deps.archive.read_bytes(custody_name(self.job.stem))
        if found is None:
            return None
        try:
            return CustodyRecord.model_validate_json(found[0])
        except ValidationError:
            raise ArchiveIntegrityError(f"{custody_name(self.job.stem)} is not a chain-of-custody record") from None

    async def take_lease(self) -> bool:
        """The chunk's lease, held (and renewed) until ``lease_scope`` closes; False if another kept it."""
        return await self.lease_scope.enter_async_context(
            self.deps.state.lease(lock_name(self.job.stem), LEASE_SECONDS, LEASE_WAIT_SECONDS)
        )

    async def lease_if_long(self) -> None:
        """Under the claim, a copy that is still running halfway through the claim's window takes the lease,
        so duplicates keep leaving it to this worker once the claim looks stale; a quick copy never needs one.
        If another worker holds it (storage refusing renewals), both copy and converge on one blob."""
        await asyncio.sleep(LEASE_AFTER_SECONDS)
        if not await self.take_lease():
            log.warning("another worker holds the lease of a chunk this one claimed; both copy, one blob stays")
