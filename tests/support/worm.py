"""An in-memory archive container as ``recording-archive check``'s probe sees it, with or without WORM."""

from __future__ import annotations

from dataclasses import dataclass, field

from recording_pipeline.core.deployment_check import Answer, Versions


@dataclass
class FakeArchive:
    """An archive container: ``worm`` "version" (infra's: an overwrite is a new version, the first kept immutable,
    metadata and delete refused), "container" (everything refused), "none" (nothing refused), "role" (the
    identity may create but not change); ``create_refused`` as a container the identity cannot write."""

    worm: str = "version"
    create_refused: bool = False
    blobs: dict[str, list[bytes]] = field(default_factory=dict)

    async def create(self, name: str, data: bytes) -> Answer:
        if self.create_refused:
            return Answer(False, 403, "AuthorizationPermissionMismatch")
        if name in self.blobs:
            return Answer(False, 409, "BlobAlreadyExists")
        self.blobs[name] = [data]
        return Answer(True, 201)

    def _change(self, allowed_in_version: bool) -> Answer:
        if self.worm == "role":
            return Answer(False, 403, "AuthorizationPermissionMismatch")
        if self.worm == "container" or (self.worm == "version" and not allowed_in_version):
            return Answer(False, 409, "BlobImmutableDueToPolicy")
        return Answer(True)

    async def overwrite(self, name: str, data: bytes) -> Answer:
        answer = self._change(allowed_in_version=True)
        if answer.accepted:
            self.blobs[name] = [*self.blobs[name], data] if self.worm == "version" else [data]
        return answer

    async def set_metadata(self, name: str, metadata: dict[str, str]) -> Answer:
        return self._change(allowed_in_version=False)

    async def delete(self, name: str) -> Answer:
        answer = self._change(allowed_in_version=False)
        if answer.accepted:
            del self.blobs[name]
        return answer

    async def versions(self, name: str) -> Versions:
        kept = self.blobs.get(name, [])
        return Versions(len(kept), "2033-12-01T10:00:00+00:00" if self.worm == "version" and kept else None)
