"""What an operator command works on: the archive account's two containers (and, for status and replay --poison,
the chunk queue), built from only the settings each command needs — never ACS's key — and closed after it."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recording_pipeline.core.errors import ConfigurationError, ContainerNotFoundError, OperatorInputError, StorageError
from recording_pipeline.core.settings import ArchiveSettings, QueueSettings

if TYPE_CHECKING:
    from recording_pipeline.edges.archive import BlobArchive
    from recording_pipeline.edges.chunk_queue import StorageChunkQueue


@dataclass
class OperatorEdges:
    archive: BlobArchive  # the write-once archive container
    state: BlobArchive  # the state container beside it
    queue: StorageChunkQueue | None


@asynccontextmanager
async def operator_edges(queue: bool) -> AsyncIterator[OperatorEdges]:
    """The archive account's two containers (and, if asked and configured, the chunk queue): no ACS key needed."""
    from recording_pipeline.runtime import needs_identity, open_archive, open_queue, open_state

    archive_settings = ArchiveSettings.from_env(os.environ)
    queue_settings = QueueSettings.from_env(os.environ) if queue else None
    targets = [archive_settings.target] + ([queue_settings.target] if queue_settings else [])
    credential = None
    if needs_identity(*targets):
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
    edges = OperatorEdges(
        open_archive(archive_settings, credential),
        open_state(archive_settings, credential),
        open_queue(queue_settings, credential) if queue_settings else None,
    )
    try:
        yield edges
    finally:
        for edge in (edges.archive, edges.state, edges.queue, credential):
            if edge is not None:
                await edge.close()


def operator_name() -> str:
    """Who runs the command, for the access records and a bag's bag-info.txt: the login and host, as the
    operating system names them (``--by`` names someone else). The storage identity is not known to the app."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def queue_configured() -> bool:
    try:
        QueueSettings.from_env(os.environ)
    except ConfigurationError:
        return False
    return True


async def operate(name: str, command: Callable[[OperatorEdges], Awaitable[int]], queue: bool = False) -> int:
    """One operator command on the archive account's edges; what the operator or the account got wrong becomes a
    line on stderr and an exit code (2: the input or a missing container; 1: the account refused)."""
    async with operator_edges(queue=queue) as edges:
        try:
            return await command(edges)
        except OperatorInputError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        except ContainerNotFoundError:
            missing = [s.container_name for s in (edges.archive, edges.state) if not await s.exists()]
            verb = "does" if len(missing) == 1 else "do"
            print(f"{name}: container {', '.join(map(repr, missing))} {verb} not exist", file=sys.stderr)
            return 2
        except StorageError as exc:
            print(f"{name}: the storage account refused: {exc}", file=sys.stderr)
            return 1
