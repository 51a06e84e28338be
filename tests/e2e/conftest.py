"""Fixtures of the end-to-end suite beside the session's (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.test_operations_cli import seeded  # noqa: F401 - an archive the pipeline wrote, for test_export.py
from tests.support.event_receiver import EventReceiver


@pytest.fixture
async def topic() -> AsyncIterator[EventReceiver]:
    """A loopback Event Grid topic that takes CloudEvents with its access key."""
    receiver = await EventReceiver().start()
    yield receiver
    await receiver.stop()
