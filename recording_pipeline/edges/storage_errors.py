"""Azure Storage's exceptions, translated into the pipeline's own (core.errors) at the edge.

Nothing above the edges imports azure.core: the worker, the webhook and the
operator commands see StorageError and its kinds only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceExistsError

from recording_pipeline.core.errors import NO_CREDENTIAL, BlobArchivedError, ContainerNotFoundError, StorageError

log = logging.getLogger(__name__)
_QUERY = re.compile(r"\?[^\s'\"\]>)]*")


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Raise any Azure SDK error inside as a StorageError (with its status and error code) naming ``what``."""
    try:
        yield
    except ClientAuthenticationError as exc:
        if exc.response is not None:  # the service answered 401/403
            raise _answered(what, exc) from None
        # No answer at all: no credential could get a token (azure.identity's chain, each reason on its own line).
        first = (str(exc.message or exc).strip().splitlines() or [""])[0]
        raise StorageError(f"{what}: no token for the storage account: {first}", None, NO_CREDENTIAL) from None
    except HttpResponseError as exc:
        raise _answered(what, exc) from None
    except AzureError as exc:  # no answer at all: connection refused, reset, timed out
        # aiohttp's message may hold the request's URL, whose query can be a SAS token: never repeated.
        said = _QUERY.sub("", str(exc.message))
        raise StorageError(f"{what}: {type(exc).__name__}: {said}") from None


def _answered(what: str, exc: HttpResponseError) -> StorageError:
    code = getattr(exc, "error_code", None)
    status = exc.status_code
    kind = {"ContainerNotFound": ContainerNotFoundError, "BlobArchived": BlobArchivedError}.get(str(code), StorageError)
    return kind(f"{what}: {status} {code or exc.reason}", status, str(code) if code else None)


async def translated_iter[T](what: str, source: AsyncIterator[T]) -> AsyncIterator[T]:
    """``source`` with its errors translated, for listings and downloads."""
    with storage_errors(what):
        async for item in source:
            yield item


async def create_if_missing(create: Awaitable[Any], what: str) -> None:
    """Create a container or queue unless it exists. 403 means least-privilege roles: the infra made it. Any
    other failure, an answer or none (the account unreachable), is a StorageError."""
    with storage_errors(f"create {what}"):
        try:
            await create
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code != 403:
                raise
            log.info("no right to create %s; expecting the deployment to have created it", what)
