"""The unit tests' in-memory world: every edge a fake, one per test."""

from __future__ import annotations

import pytest

from tests.support.world import World


@pytest.fixture
def world() -> World:
    return World()
