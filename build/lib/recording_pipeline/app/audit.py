"""ArchiveAudit: what the webhook keeps in the archive besides jobs.

Rejected events are kept whole with their reason (``_rejected/``), so nothing
that reached us is lost even when it cannot be processed; bring-your-own-storage
recordings get a manifest that says ACS already delivered them elsewhere.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from recording_pipeline.core.naming import manifest_name, rejected_name
from recording_pipeline.core.ports import ArchiveStore
from recording_pipeline.core.state import external_manifest

JSON = "application/json"


class ArchiveAudit:
    def __init__(self, store: ArchiveStore) -> None:
        self._store = store

    async def keep_rejected(self, raw: Any, reason: str, received: datetime) -> None:
        event = json.dumps(raw, sort_keys=True, default=str).encode()
        record = {"reason": reason, "receivedAt": received.isoformat(), "event": raw}
        await self._store.create(rejected_name(event, received), json.dumps(record, default=str).encode(), JSON)

    async def record_external(self, identity: dict[str, Any], received: datetime) -> None:
        doc = external_manifest(
            identity["eventId"],
            identity["callId"],
            identity["recordingId"],
            identity["serverCallId"],
            identity["recordingKey"],
            identity["topic"],
            received,
        )
        name = manifest_name(doc.call_id, doc.recording_key)
        await self._store.create(name, json.dumps(doc.to_json(), indent=1).encode(), JSON)
