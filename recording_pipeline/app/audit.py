"""ArchiveAudit: what the webhook keeps in the archive besides jobs.

Rejected events are kept whole with their reason (``_rejected/``), so nothing
that reached us is lost even when it cannot be processed; a bring-your-own-
storage recording gets a record, written once, that ACS delivered it to the
customer's own container, and a manifest in the state container saying so; the recording is filed under the
day it was received (it carries no start time) in the archive's index.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from recording_pipeline.app.recording_index import entry_body
from recording_pipeline.core.custody import ExternalRecord
from recording_pipeline.core.naming import day_entry, external_name, manifest_name, rejected_name, start_day
from recording_pipeline.core.ports import ArchiveStore, StateStore

JSON = "application/json"


class ArchiveAudit:
    def __init__(self, archive: ArchiveStore, state: StateStore) -> None:
        self._archive = archive
        self._state = state

    async def keep_rejected(self, raw: Any, reason: str, received: datetime) -> None:
        event = json.dumps(raw, sort_keys=True, default=str).encode()
        record = {"reason": reason, "receivedAt": received.isoformat(), "event": raw}
        await self._archive.create(rejected_name(event, received), json.dumps(record, default=str).encode(), JSON)

    async def record_external(self, evidence: ExternalRecord) -> None:
        filed = day_entry(start_day(None, evidence.received_at), evidence.call_id, evidence.recording_key)
        entry = entry_body(evidence.call_id, evidence.recording_id, evidence.recording_key, None)
        await asyncio.gather(
            self._archive.create(external_name(evidence.call_id, evidence.recording_key), evidence.to_json(), JSON),
            self._archive.create(filed, entry, JSON),
        )
        doc = evidence.manifest()
        name = manifest_name(doc.call_id, doc.recording_key)
        await self._state.create(name, json.dumps(doc.to_json(), indent=1).encode(), JSON)
