"""ArchiveAudit: what the webhook keeps in the archive besides jobs.

Rejected events are kept whole with their reason (``_rejected/``), so nothing
that reached us is lost even when it cannot be processed; bring-your-own-storage
recordings get a manifest that says ACS already delivered them elsewhere.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .archive import JSON, ArchiveStore
from .manifest import external_manifest
from .naming import manifest_name, rejected_name


class ArchiveAudit:
    def __init__(self, store: ArchiveStore) -> None:
        self._store = store

    async def keep_rejected(self, raw: Any, reason: str, received: datetime) -> None:
        event = json.dumps(raw, sort_keys=True, default=str).encode()
        record = {"reason": reason, "receivedAt": received.isoformat(), "event": raw}
        await self._store.create(rejected_name(event, received), json.dumps(record, default=str).encode(), JSON)

    async def record_external(self, identity: dict[str, Any], received: datetime) -> None:
        doc = external_manifest(identity, received)
        name = manifest_name(identity["callId"], identity["recordingKey"])
        await self._store.create(name, json.dumps(doc, indent=1).encode(), JSON)
