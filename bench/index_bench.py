"""Finding recordings at archive scale: one day's lookup through the day index, beside the full scan it replaced.

    .venv/bin/python -m bench.index_bench [--recordings 100000] [--days 90] [--label NAME]

A fresh Azurite (its access log on, so every request is counted where it arrives) is seeded directly with
``--recordings`` recordings spread evenly over ``--days`` days: for each, its manifest in the state container
(one archived chunk, as the worker writes it) and its entry in the archive's day index
(``_index/days/{day}/{callId}/{recordingKey}``), created with If-None-Match: * by many concurrent requests with a
container SAS, not through the pipeline: the point is the lookup's cost, not the archiving's.

Then, in the same run, for the same day (the middle one) and with the same real edges (``edges.archive``):

- **index**: ``cli/status.recording_status(archive, state, since=day, until=day + 1)``, what
  ``recording-archive status --since DAY --until DAY`` does: one listing of the day's prefix, the manifests it
  names, the legal-hold registry;
- **full scan**: what ``status --since`` did before the index: ``cli/manifests.list_manifests(state, "")`` (every
  name in the state container), every manifest read, and those that started that day kept.

Each line gives the recordings found (both must agree), the storage requests by kind from Azurite's log, and the
seconds. Results go to ``.bench/index-LABEL.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import DEV_ACCOUNT, DEV_KEY, Azurite
from devtools.request_census import census, read_log
from recording_pipeline.app.recording_index import entry_body, filed_day
from recording_pipeline.cli.manifests import list_manifests, read_manifests
from recording_pipeline.cli.status import recording_status
from recording_pipeline.core.naming import day_entry, manifest_name
from recording_pipeline.core.state import ChunkState, ChunkUpdate, new_manifest, record_chunk
from recording_pipeline.edges.archive import BlobArchive

OUT_DIR = Path(".bench")
ARCHIVE, STATE = "recordings", "recordings-state"
FIRST_DAY = date(2026, 1, 1)
SEED_CONCURRENCY = 48


@dataclass
class Lookup:
    name: str
    found: int
    seconds: float
    requests: dict[str, int] = field(default_factory=dict)  # "role: operation" -> count

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@dataclass
class _Recording:
    """One seeded recording, as core.state.ChunkOf sees its one chunk."""

    call_id: str
    recording_key: str
    recording_id: str | None
    recording_start_time: datetime | None
    event_time: datetime
    expires_at: datetime
    document_id: str
    chunk_index: int = 0
    end_reason: str | None = "SessionEnded"
    server_call_id: str | None = None
    topic: str | None = None

    @property
    def is_last_chunk(self) -> bool:
        return True


def recordings(count: int, days: int) -> list[_Recording]:
    """``count`` recordings, evenly over ``days`` days from FIRST_DAY, at distinct times of day."""
    made = []
    for i in range(count):
        day = FIRST_DAY + timedelta(days=i % days)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=(i * 7919) % 86400)
        call = f"{i:08x}-0000-4000-8000-{i * 2654435761 % 2**48:012x}"
        ended = start + timedelta(minutes=30)
        made.append(_Recording(call, f"r-rec{i}", f"rec{i}", start, ended, ended + timedelta(hours=24), f"doc-{i}"))
    return made


def manifest_json(rec: _Recording) -> bytes:
    """A recording's manifest with its one chunk archived, as the worker leaves it."""
    archived = rec.event_time + timedelta(seconds=20)
    update = ChunkUpdate(
        ChunkState.ARCHIVED,
        media_blob=f"{rec.call_id}/{rec.recording_key}/00000-{rec.document_id}.mp3",
        metadata_blob=f"{rec.call_id}/{rec.recording_key}/00000-{rec.document_id}.metadata.json",
        content_type="audio/mpeg",
        size=1_800_000,
        sha256="0" * 64,
        archived_at=archived,
        seconds_left_at_archive=86380,
        source_deleted_at=archived,
    )
    doc = record_chunk(new_manifest(rec, rec.event_time), rec, archived, update)
    return json.dumps(doc.to_json(), indent=1, sort_keys=True).encode()


async def seed(azurite: Azurite, made: list[_Recording], concurrency: int = SEED_CONCURRENCY) -> float:
    """Every manifest and day entry, created directly: seconds taken."""
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        for name in (ARCHIVE, STATE):
            await service.get_container_client(name).create_container()
    base = f"http://{azurite.host}:{azurite.blob_port}/{DEV_ACCOUNT}"
    expiry = datetime.now(UTC) + timedelta(hours=6)
    sas = {
        name: generate_container_sas(
            DEV_ACCOUNT, name, account_key=DEV_KEY, permission=ContainerSasPermissions(create=True), expiry=expiry
        )
        for name in (ARCHIVE, STATE)
    }
    puts: list[tuple[str, str, bytes]] = []
    for rec in made:
        puts.append((STATE, manifest_name(rec.call_id, rec.recording_key), manifest_json(rec)))
        entry = entry_body(rec.call_id, rec.recording_id, rec.recording_key, rec.recording_start_time)
        puts.append((ARCHIVE, day_entry(filed_day(rec), rec.call_id, rec.recording_key), entry))
    queue = iter(puts)
    headers = {"x-ms-blob-type": "BlockBlob", "If-None-Match": "*", "Content-Type": "application/json"}
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for container, name, body in queue:
                url = f"{base}/{container}/{name}?{sas[container]}"
                async with session.put(url, data=body, headers=headers) as answer:
                    if answer.status != 201:
                        raise RuntimeError(f"seeding {name}: {answer.status} {await answer.text()}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


async def full_scan(state: BlobArchive, since: datetime, until: datetime) -> int:
    """``status --since`` before the index: every manifest listed and read, those of the day kept."""
    docs, _unreadable = await read_manifests(state, await list_manifests(state, ""))
    return sum(
        1 for _name, doc in docs if doc and doc.recording_start_time and since <= doc.recording_start_time < until
    )


async def measure(azurite: Azurite, name: str, lookup: Any) -> Lookup:
    assert azurite.log_path is not None
    await asyncio.sleep(1.0)  # Azurite logs a request just after answering it: let the last ones land
    _, start = read_log(azurite.log_path)
    began = time.monotonic()
    found = await lookup()
    seconds = time.monotonic() - began
    await asyncio.sleep(1.0)
    requests, _ = read_log(azurite.log_path, start)
    roles = {ARCHIVE: "archive", STATE: "state"}
    counts = census(requests, roles.get)
    return Lookup(name, found, seconds, {f"{role}: {op}": n for (role, op), n in sorted(counts.items())})


async def run_bench(count: int, days: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="index-bench-") as location:
        return await _run(count, days, Path(location))


async def _run(count: int, days: int, location: Path) -> dict[str, Any]:
    azurite = Azurite(location=location, access_log=True).start()
    try:
        made = recordings(count, days)
        seeded = await seed(azurite, made)
        day = FIRST_DAY + timedelta(days=days // 2)
        since = datetime(day.year, day.month, day.day, tzinfo=UTC)
        until = since + timedelta(days=1)
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        archive, state = BlobArchive(service, ARCHIVE), BlobArchive(service, STATE)
        try:

            async def by_index() -> int:
                report = await recording_status(archive, state, since=since, until=until)
                return len(report.recordings)

            index = await measure(azurite, "index (status --since DAY --until DAY)", by_index)
            scan = await measure(azurite, "full scan (status before the index)", lambda: full_scan(state, since, until))
        finally:
            await service.close()
        expected = sum(1 for rec in made if filed_day(rec) == day)
        if not index.found == scan.found == expected:
            raise AssertionError(f"lookups disagree: index {index.found}, scan {scan.found}, seeded {expected}")
        return {
            "recordings": count,
            "days": days,
            "day": day.isoformat(),
            "seeded_blobs": 2 * count,
            "seed_seconds": round(seeded, 1),
            "lookups": [asdict(index) | {"total": index.total}, asdict(scan) | {"total": scan.total}],
        }
    finally:
        azurite.stop(grace=2)


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['recordings']:,} recordings over {result['days']} days; {result['seeded_blobs']:,} blobs seeded in "
        f"{result['seed_seconds']} s; the day looked up: {result['day']}",
        f"{'lookup':<40} {'found':>6} {'requests':>9} {'seconds':>8}  by kind",
    ]
    for lookup in result["lookups"]:
        kinds = ", ".join(f"{k} {v:,}" for k, v in lookup["requests"].items())
        lines.append(
            f"{lookup['name']:<40} {lookup['found']:>6} {lookup['total']:>9,} {lookup['seconds']:>8.2f}  {kinds}"
        )
    index, scan = result["lookups"]
    lines.append(
        f"the index: {scan['total'] / max(index['total'], 1):.0f} x fewer requests, "
        f"{scan['seconds'] / max(index['seconds'], 1e-9):.0f} x faster"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--recordings", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--label", default="run")
    args = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    result = asyncio.run(run_bench(args.recordings, args.days))
    result["measuredAt"] = datetime.now(UTC).isoformat(timespec="seconds")
    (OUT_DIR / f"index-{args.label}.json").write_text(json.dumps(result, indent=1))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
