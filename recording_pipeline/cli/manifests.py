"""The state container's manifests as the operator commands read them: listed, then read a few at a time, each
unreadable one named with the reason instead of failing the command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable

from pydantic import ValidationError

from recording_pipeline.core.errors import BlobArchivedError, BlobTooLargeError, StorageError
from recording_pipeline.core.ports import StateStore
from recording_pipeline.core.state import Manifest

MANIFEST_SUFFIX = "/manifest.json"
READ_CONCURRENCY = 16


async def list_manifests(state: StateStore, prefix: str = "") -> list[str]:
    """Names of the manifests under ``prefix``: ``{callId}/{recordingKey}/manifest.json``, never ``_...``."""
    return [
        name
        async for name in state.list_names(prefix)
        if name.endswith(MANIFEST_SUFFIX) and not name.startswith("_") and name.count("/") == 2
    ]


async def read_manifests(state: StateStore, names: list[str]) -> tuple[list[tuple[str, Manifest | None]], list[str]]:
    """Each name with its manifest (None if absent or unreadable), in order; and "name: why" for the unreadable."""
    unreadable: list[str] = []

    async def read(name: str) -> tuple[str, Manifest | None]:
        try:
            found = await state.read_json(name)
            return name, Manifest.from_json(found[0]) if found is not None else None
        except BlobArchivedError:  # the lifecycle rule moved it to the archive tier
            unreadable.append(f"{name}: in the archive tier: rehydrate it to read")
        except BlobTooLargeError as exc:
            unreadable.append(f"{name}: {exc}")
        except (ValueError, ValidationError):
            unreadable.append(f"{name}: not a manifest")
        except StorageError as exc:
            unreadable.append(f"{name}: {exc}")
        return name, None

    results = await bounded(READ_CONCURRENCY, (read(n) for n in names))
    return results, unreadable


async def bounded[T](limit: int, jobs: Iterable[Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(run(j) for j in jobs)))
