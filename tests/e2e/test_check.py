"""``recording-archive check`` against Azurite, the recording simulator and a loopback topic.

On Azurite the archive's create is proved and the three WORM lines say plainly that the emulator cannot show WORM
(the canary is created, never changed); the other lines are ok or FAIL for real: a container that is missing, an
ACS key that is not the resource's, a topic that refuses the key, host.json overrides that break the host's rules.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from recording_pipeline.cli.check import check
from recording_pipeline.core.deployment_check import CHECK_PREFIX
from tests.support.event_receiver import EventReceiver
from tests.support.stack import REPO, Stack

WRONG_KEY = "endpoint={endpoint};accesskey=d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="


async def _run(stack: Stack, capsys: pytest.CaptureFixture[str], **overrides: str) -> tuple[int, dict[str, Any]]:
    runtime = await stack.runtime()  # the containers and queues exist, as after a deploy
    await runtime.close()
    status = await check({**stack.env, **overrides}, REPO, as_json=True)
    lines = json.loads(capsys.readouterr().out)
    return status, {line["name"]: line for line in lines}


async def test_a_working_local_stack_passes_and_says_what_it_cannot_check(
    stack: Stack, capsys: pytest.CaptureFixture[str], topic: EventReceiver
) -> None:
    status, lines = await _run(
        stack, capsys, OUTBOUND_EVENTS_TOPIC_ENDPOINT=topic.endpoint, OUTBOUND_EVENTS_TOPIC_KEY=topic.key
    )
    assert status == 0, lines
    verdicts = {name: line["verdict"] for name, line in lines.items()}
    assert verdicts == {
        "key vault references": "ok",
        "app settings": "ok",
        "attempts and maxDequeueCount": "ok",
        "functionTimeout and scale-in": "ok",
        "archive accepts a create": "ok",
        "archive refuses an overwrite": "not checkable here",
        "archive refuses a metadata change": "not checkable here",
        "archive refuses a delete": "not checkable here",
        "state container reachable": "ok",
        "chunk queue reachable": "ok",
        "poison queue reachable": "ok",
        "ACS accepts a signed request": "ok",
        "outbound events topic takes an event": "ok",
    }
    assert "Azurite" in lines["archive refuses an overwrite"]["reason"]
    canary = lines["archive accepts a create"]["reason"].removeprefix("created ")
    assert canary.startswith(CHECK_PREFIX)
    # The canary was created and left as it is (the session's write-once guard would fail the run otherwise).
    [event] = topic.delivered()
    assert event["type"] == "RecordingArchive.DeploymentCheck"
    [signed] = [r for r in stack.simulator.requests if "_check-" in r.path]
    assert signed.authorized and signed.status == 404


async def test_each_broken_part_fails_its_own_line(
    stack: Stack, capsys: pytest.CaptureFixture[str], topic: EventReceiver
) -> None:
    endpoint = stack.simulator.connection_string.split(";")[0].removeprefix("endpoint=")
    status, lines = await _run(
        stack,
        capsys,
        ARCHIVE_CONTAINER="rec-not-deployed",
        ARCHIVE_STATE_CONTAINER="state-not-deployed-either",
        ACS_CONNECTION_STRING=WRONG_KEY.format(endpoint=endpoint),
        OUTBOUND_EVENTS_TOPIC_ENDPOINT=topic.endpoint,
        OUTBOUND_EVENTS_TOPIC_KEY="not-the-topic-key",
        AzureFunctionsJobHost__functionTimeout="02:00:00",
    )
    assert status == 1
    failed = {name for name, line in lines.items() if line["verdict"] == "FAIL"}
    assert failed == {
        "functionTimeout and scale-in",
        "archive accepts a create",
        "state container reachable",
        "ACS accepts a signed request",
        "outbound events topic takes an event",
    }
    assert "access key" in lines["ACS accepts a signed request"]["fix"]
    assert all(lines[name]["fix"] for name in failed)


async def test_unusable_settings_fail_without_touching_anything(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    unresolved = "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/acs-connection-string/)"
    status, lines = await _run(stack, capsys, ACS_CONNECTION_STRING=unresolved)
    assert status == 1
    assert lines["key vault references"]["verdict"] == "FAIL"
    assert "ACS_CONNECTION_STRING" in lines["key vault references"]["reason"]
    assert lines["storage, queues, ACS, topic"]["verdict"] == "not checkable here"


async def test_the_command_line_prints_lines_and_exits_by_them(stack: Stack, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recording_pipeline",
        "check",
        cwd=tmp_path,
        env={**os.environ, **stack.env, "ARCHIVE_CONTAINER": "rec-nowhere"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 1, err.decode()
    text = out.decode()
    assert "FAIL" in text and "archive accepts a create" in text and "fix: " in text
    assert "ok                  ACS accepts a signed request" in text
