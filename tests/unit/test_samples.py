"""The sample events and the .http file shipped for trying the webhook stay valid."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from recording_pipeline.core.events import (
    RECORDING_EVENT_TYPE,
    VALIDATION_EVENT_TYPE,
    parse_recording_event,
    read_envelope,
    split_body,
    validation_code,
)
from tests.support.stack import REPO

SAMPLES = REPO / "samples"


@pytest.mark.parametrize("path", sorted((SAMPLES / "events").glob("*.json")), ids=lambda p: p.name)
def test_sample_event_parses(path: Path) -> None:
    content_type = "application/cloudevents+json" if "cloudevents" in path.name else "application/json"
    events, schema = split_body(path.read_bytes(), content_type)
    for raw in events:
        envelope = read_envelope(raw, schema)
        if envelope.type == VALIDATION_EVENT_TYPE:
            assert validation_code(envelope)
        else:
            assert envelope.type == RECORDING_EVENT_TYPE
            assert parse_recording_event(envelope).data.chunks


def test_http_file_names_existing_samples() -> None:
    text = (SAMPLES / "recording-events.http").read_text()
    referenced = re.findall(r"^< \./(\S+)$", text, flags=re.MULTILINE)
    assert len(referenced) >= 5
    for name in referenced:
        assert (SAMPLES / name).is_file(), name


def test_the_sample_subscriber_type_checks_strictly() -> None:
    """A function app of its own: checked on its own (its module name is function_app too)."""
    sample = SAMPLES / "subscriber" / "function_app.py"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--strict", str(sample)],
        cwd=SAMPLES / "subscriber",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
