"""Access records in the archive (core.access): written once by whoever hands recordings over or holds them, and
read back per recording or per day, each one listing."""

from __future__ import annotations

import json
from datetime import date

from pydantic import ValidationError

from recording_pipeline.app.recording_index import JSON, create_entries
from recording_pipeline.core.access import AccessRecord
from recording_pipeline.core.naming import access_prefix, access_record_of, recording_access_prefix
from recording_pipeline.core.ports import ArchiveStore


async def record_access(archive: ArchiveStore, record: AccessRecord) -> str:
    """The record, then an entry per recording pointing at it (an entry never names a record that is not there).
    Each is created once: writing the same record again (a resumed export) changes nothing. Its name."""
    await archive.create(record.name, record.to_json(), JSON)
    pointer = json.dumps({"record": record.name, "action": record.action, "actor": record.actor}).encode()
    await create_entries(archive, [(entry, pointer) for entry in record.entries()])
    return record.name


async def accesses_of(archive: ArchiveStore, call_id: str, rec_key: str) -> list[AccessRecord]:
    """Every recorded access to one recording, oldest first."""
    records = []
    async for entry in archive.list_names(recording_access_prefix(call_id, rec_key)):
        record = await read_access(archive, access_record_of(entry))
        if record is not None:
            records.append(record)
    return records


async def accesses_on(archive: ArchiveStore, day: date) -> list[AccessRecord]:
    """Every recorded access of one day (UTC), oldest first."""
    records = []
    async for name in archive.list_names(access_prefix(day)):
        record = await read_access(archive, name)
        if record is not None:
            records.append(record)
    return records


async def read_access(archive: ArchiveStore, name: str) -> AccessRecord | None:
    found = await archive.read_bytes(name)
    if found is None:
        return None
    try:
        return AccessRecord.model_validate_json(found[0])
    except ValidationError:
        return None
