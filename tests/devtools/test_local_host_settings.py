"""The local host's own settings (devtools.local_host.LocalHostSettings): the function key, the lease, the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.local_host import RECEIVE_VISIBILITY_SECONDS, LocalHostSettings
from recording_pipeline.core.errors import ConfigurationError

KEY = "local-function-key-0123456789"


def test_defaults_and_overrides() -> None:
    assert LocalHostSettings.from_env({"WEBHOOK_KEY": KEY}) == LocalHostSettings(KEY, RECEIVE_VISIBILITY_SECONDS)
    local = LocalHostSettings.from_env(
        {"WEBHOOK_KEY": KEY, "LOCAL_HOST_LEASE_SECONDS": "5", "LOCAL_TELEMETRY_FILE": "/tmp/t.jsonl"}
    )
    assert (local.lease_seconds, local.telemetry_file) == (5.0, Path("/tmp/t.jsonl"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "WEBHOOK_KEY"),
        ({"WEBHOOK_KEY": KEY, "LOCAL_HOST_LEASE_SECONDS": "soon"}, "number of seconds"),
        ({"WEBHOOK_KEY": KEY, "LOCAL_HOST_LEASE_SECONDS": "7201"}, "between 1 and 3600"),
    ],
)
def test_what_it_cannot_use_is_a_configuration_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LocalHostSettings.from_env(env)


def test_the_key_stays_out_of_repr() -> None:
    assert KEY not in repr(LocalHostSettings.from_env({"WEBHOOK_KEY": KEY}))
