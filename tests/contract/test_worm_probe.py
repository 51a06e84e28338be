"""The WORM probe's answers from the in-memory container and from Azure Storage's (Azurite): the same cases.

Azurite has no immutability, so the real edge is run as a container without WORM (``FakeArchive("none")``): a create
taken once and refused the second time, then an overwrite, a metadata change and a delete all accepted. The
container is not one of the archive containers the session's write-once guard watches: this probe changes a blob
on purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import Azurite
from recording_pipeline.edges.worm_probe import ContainerWormProbe
from tests.support.worm import FakeArchive


@pytest.fixture(params=["fake", "azurite"])
async def probe(request: pytest.FixtureRequest, azurite: Azurite) -> AsyncIterator[Any]:
    if request.param == "fake":
        yield FakeArchive("none")
        return
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client(f"probe-{uuid.uuid4().hex[:12]}")
    await container.create_container()
    real = ContainerWormProbe(container)
    yield real
    await real.close()
    await service.close()


async def test_a_create_is_taken_once(probe: Any) -> None:
    first = await probe.create("_check/canary.txt", b"one")
    again = await probe.create("_check/canary.txt", b"two")
    assert first.accepted and not again.accepted
    assert (again.status, again.code) == (409, "BlobAlreadyExists") and not again.refused_by_worm


async def test_without_worm_every_change_is_accepted(probe: Any) -> None:
    assert (await probe.create("_check/canary.txt", b"one")).accepted
    for answer in (
        await probe.overwrite("_check/canary.txt", b"two"),
        await probe.set_metadata("_check/canary.txt", {"changed_by": "check"}),
        await probe.delete("_check/canary.txt"),
    ):
        assert answer.accepted and not answer.refused_by_worm


async def test_a_missing_container_refuses_the_create(probe: Any, azurite: Azurite) -> None:
    if isinstance(probe, FakeArchive):
        probe.create_refused = True
        refused = await probe.create("_check/canary.txt", b"one")
    else:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        async with service:
            missing = ContainerWormProbe(service.get_container_client("probe-never-made"))
            refused = await missing.create("_check/canary.txt", b"one")
    assert not refused.accepted and refused.status in (403, 404) and not refused.refused_by_worm
