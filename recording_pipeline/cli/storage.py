"""What an operator command works on: the archive account's two containers (and, for status and replay --poison,
the chunk queue), built from only the settings each command needs — never ACS's key — and closed after it; and
what becomes of the storage's errors: one line that names the account and the fix, exit 2.

The clients wait less than the app's: an operator at a terminal wants to know in seconds that an account cannot be
reached, where the app's worker rides out a long outage. Against an unreachable account the SDK's defaults (20 s to
connect, 3 retries 15 s + 3^n apart) kept ``status`` silent for 85 s; with these, one retry about a second after
the first try, a dead endpoint is reported within about 10 s, a silent one within about 32 s.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recording_pipeline.cli.logs import log_path
from recording_pipeline.core.errors import (
    NO_CREDENTIAL,
    ConfigurationError,
    ContainerNotFoundError,
    OperatorInputError,
    StorageError,
)
from recording_pipeline.core.settings import ArchiveSettings, QueueSettings, StorageTarget
from recording_pipeline.edges.client_limits import OPERATOR

if TYPE_CHECKING:
    from recording_pipeline.edges.archive import BlobArchive
    from recording_pipeline.edges.chunk_queue import StorageChunkQueue

log = logging.getLogger(__name__)


# Keyword arguments of the storage clients: an operator waits seconds, not minutes (edges.client_limits).
OPERATOR_LIMITS = OPERATOR.options()


@dataclass
class OperatorEdges:
    archive: BlobArchive  # the write-once archive container
    state: BlobArchive  # the state container beside it
    queue: StorageChunkQueue | None
    target: StorageTarget  # the archive account, as the settings name it


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
        open_archive(archive_settings, credential, **OPERATOR_LIMITS),
        open_state(archive_settings, credential, **OPERATOR_LIMITS),
        open_queue(queue_settings, credential, **OPERATOR_LIMITS) if queue_settings else None,
        archive_settings.target,
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
    """One operator command on the archive account's edges; what the operator or the account got wrong becomes one
    line on stderr and exit status 2."""
    async with operator_edges(queue=queue) as edges:
        try:
            return await command(edges)
        except OperatorInputError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        except ContainerNotFoundError:
            missing = [s.container_name for s in (edges.archive, edges.state) if not await _exists(s)]
            verb = "does" if len(missing) == 1 else "do"
            shown = ", ".join(map(repr, missing)) or "the archive's"
            print(
                f"{name}: container {shown} {verb} not exist in {account_url(edges.archive.url)}: check "
                "ARCHIVE_CONTAINER and ARCHIVE_STATE_CONTAINER (the app creates them on its first recording)",
                file=sys.stderr,
            )
            return 2
        except StorageError as exc:
            account = account_url(edges.archive.url)
            log.error("%s could not use %s: %s", name, account, exc, extra={"account": account})
            print(f"{name}: {storage_trouble(exc, account, edges.target)}", file=sys.stderr)
            return 2


async def _exists(container: BlobArchive) -> bool:
    try:
        return await container.exists()
    except StorageError:
        return True  # not known to be missing


def account_url(container_url: str) -> str:
    """The account's endpoint from a container's URL (without any query string)."""
    return container_url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[0]


def storage_trouble(exc: StorageError, account: str, target: StorageTarget) -> str:
    """What went wrong with the storage account and what to do about it, in one line."""
    setting = target.setting or "the storage setting"
    if exc.code == NO_CREDENTIAL:
        return (
            f"no identity could sign in to {account} ({exc}): run az login (or give this machine a managed "
            f"identity), or set {setting} to a connection string"
        )
    if exc.status is None:
        return (
            f"no answer from {account} ({exc}): check {setting} and that this machine can reach the account "
            f"(firewall, private endpoint, VPN); details in {log_path()}"
        )
    if exc.status in (401, 403):
        return (
            f"{account} refused the request ({exc}): grant the identity you run as Storage Blob Data Reader on the "
            f"archive and state containers (Contributor on the state container for a command that writes it), "
            f"or check the key in {setting}"
        )
    return f"{account} answered {exc}; try again, details in {log_path()}"
