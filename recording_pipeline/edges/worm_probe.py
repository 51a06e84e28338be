"""What the archive container does with a change to a blob that exists: the evidence ``check`` reads WORM from.

The app never changes or deletes an archived blob; this probe does, on purpose, to one
canary blob under ``_check/``, and reports what the service answered. With
version-level immutability (what ``infra/`` deploys), a Put Blob over an existing blob
is taken as a new version while the first stays immutable, and Set Blob Metadata and
Delete Blob are refused with 409 ``BlobImmutableDueToPolicy`` (Microsoft Learn,
"Version-level immutability support"; ACS-NOTES). Azurite implements none of it.
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from recording_pipeline.core.deployment_check import Answer, Versions
from recording_pipeline.edges.storage_errors import storage_errors, translated_iter


def _refused(exc: HttpResponseError) -> Answer:
    return Answer(False, int(exc.status_code or 0), str(getattr(exc, "error_code", None) or ""))


class ContainerWormProbe:
    def __init__(self, container: ContainerClient, service: BlobServiceClient | None = None) -> None:
        """``service``: the client ``container`` came from, closed with it (they share one HTTP session)."""
        self._container = container
        self._service = service

    async def create(self, name: str, data: bytes) -> Answer:
        """Refused: the service's answer (so for each change below). No answer at all (unreachable, no token): a
        StorageError."""
        with storage_errors(f"create {name}"):
            try:
                await self._container.get_blob_client(name).upload_blob(data, overwrite=False)
            except ClientAuthenticationError as exc:
                if exc.response is None:  # no token: nothing reached the service
                    raise
                return _refused(exc)
            except HttpResponseError as exc:  # ResourceExistsError among them: the canary's name was taken
                return _refused(exc)
        return Answer(True, 201)

    async def overwrite(self, name: str, data: bytes) -> Answer:
        with storage_errors(f"overwrite {name}"):
            try:
                await self._container.get_blob_client(name).upload_blob(data, overwrite=True)
            except HttpResponseError as exc:
                return _refused(exc)
        return Answer(True, 201)

    async def set_metadata(self, name: str, metadata: dict[str, str]) -> Answer:
        with storage_errors(f"set metadata of {name}"):
            try:
                await self._container.get_blob_client(name).set_blob_metadata(metadata)
            except HttpResponseError as exc:
                return _refused(exc)
        return Answer(True)

    async def delete(self, name: str) -> Answer:
        with storage_errors(f"delete {name}"):
            try:
                await self._container.get_blob_client(name).delete_blob()
            except HttpResponseError as exc:
                return _refused(exc)
        return Answer(True, 202)

    async def versions(self, name: str) -> Versions:
        listing = self._container.list_blobs(name_starts_with=name, include=["versions", "immutabilitypolicy"])
        found: list[Any] = [blob async for blob in translated_iter(f"versions of {name}", listing) if blob.name == name]
        found.sort(key=lambda b: str(getattr(b, "version_id", "") or ""))
        first = found[0] if found else None
        policy = getattr(first, "immutability_policy", None)
        expiry = getattr(policy, "expiry_time", None)
        return Versions(len(found), expiry.isoformat() if expiry else None)

    async def close(self) -> None:
        await self._container.close()
        if self._service is not None:
            await self._service.close()
