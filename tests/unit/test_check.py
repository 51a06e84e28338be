"""``recording-archive check`` on in-memory edges: every line's ok and FAIL, and the exit status that follows.

The same probe answers come from Azure Storage (tests/contract/test_worm_probe.py runs the fake's cases that
Azurite can show against the real edge); the whole command runs against Azurite and the simulator in
tests/e2e/test_check.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from recording_pipeline.cli.check import (
    CheckTargets,
    acs_line,
    archive_lines,
    queue_lines,
    run_checks,
    state_line,
    topic_line,
)
from recording_pipeline.core.deployment_check import (
    CHECK_PREFIX,
    CheckLine,
    Verdict,
    exit_status,
    render_json,
    render_text,
    settings_lines,
)
from recording_pipeline.core.errors import (
    AcsAuthError,
    AcsTransientError,
    ConfigurationError,
    PublishError,
    RecordingGoneError,
    StorageError,
)
from recording_pipeline.core.host_rules import HostRules, QueueRules
from recording_pipeline.core.outbound import EventType, OutboundEvent
from tests.support.worm import FakeArchive

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@dataclass
class FakeState:
    refused: bool = False

    async def list_names(self, prefix: str) -> AsyncIterator[str]:
        if self.refused:
            raise StorageError("list _check/*: HttpResponseError: This request is not authorized")
        names: tuple[str, ...] = ()
        for name in names:
            yield name


@dataclass
class FakeQueue:
    refused: bool = False
    poison_name: str = "recording-chunks-poison"

    async def job_count(self) -> int:
        if self.refused:
            raise StorageError("properties of recording-chunks: AuthorizationPermissionMismatch")
        return 3

    async def poison_count(self) -> int:
        if self.refused:
            raise StorageError("properties of recording-chunks-poison: AuthorizationPermissionMismatch")
        return 0


@dataclass
class FakeAcs:
    raises: Exception = field(default_factory=lambda: RecordingGoneError("GET …: 404 NotFound"))
    urls: list[str] = field(default_factory=list)

    async def fetch_metadata(self, url: str) -> bytes:
        self.urls.append(url)
        raise self.raises


@dataclass
class FakeTopic:
    refused: bool = False
    sent: list[OutboundEvent] = field(default_factory=list)

    async def publish(self, events: list[OutboundEvent]) -> None:
        if self.refused:
            raise PublishError("the topic refused: 403 Forbidden")
        self.sent.extend(events)


def _verdicts(lines: list[CheckLine]) -> dict[str, Verdict]:
    return {line.name: line.verdict for line in lines}


async def test_infra_s_archive_proves_create_and_each_worm_refusal() -> None:
    archive = FakeArchive("version")
    lines = await archive_lines(archive, emulator=False, now=NOW)
    assert _verdicts(lines) == {
        "archive accepts a create": Verdict.OK,
        "archive refuses an overwrite": Verdict.OK,
        "archive refuses a metadata change": Verdict.OK,
        "archive refuses a delete": Verdict.OK,
    }
    [name] = archive.blobs
    assert name.startswith(CHECK_PREFIX) and len(archive.blobs[name]) == 2, "the first version is kept"
    assert "immutable until" in lines[1].reason


async def test_a_container_that_lets_an_overwrite_through_fails_the_worm_lines() -> None:
    lines = await archive_lines(FakeArchive("none"), emulator=False, now=NOW)
    verdicts = _verdicts(lines)
    assert verdicts["archive accepts a create"] is Verdict.OK
    for what in ("an overwrite", "a metadata change", "a delete"):
        assert verdicts[f"archive refuses {what}"] is Verdict.FAIL
    assert all("immutability" in line.fix for line in lines[1:])
    assert exit_status(lines) == 1


async def test_container_level_worm_refuses_all_three() -> None:
    lines = await archive_lines(FakeArchive("container"), emulator=False, now=NOW)
    assert set(_verdicts(lines).values()) == {Verdict.OK}
    assert "BlobImmutableDueToPolicy" in lines[1].reason


async def test_a_role_that_refuses_first_proves_nothing_about_worm_and_says_so() -> None:
    lines = await archive_lines(FakeArchive("role"), emulator=False, now=NOW)
    assert [line.verdict for line in lines[1:]] == [Verdict.NOT_CHECKABLE] * 3
    assert all("operator" in line.fix for line in lines[1:])
    assert exit_status(lines) == 0


async def test_on_the_emulator_worm_is_not_checkable_and_nothing_is_changed() -> None:
    archive = FakeArchive("none")  # Azurite would let every change through: the check must not try
    lines = await archive_lines(archive, emulator=True, now=NOW)
    assert [line.verdict for line in lines] == [Verdict.OK] + [Verdict.NOT_CHECKABLE] * 3
    assert all("Azurite" in line.reason for line in lines[1:])
    [versions] = archive.blobs.values()
    assert len(versions) == 1


async def test_an_archive_the_identity_cannot_write_fails_the_create_line_only() -> None:
    [line] = await archive_lines(FakeArchive(create_refused=True), emulator=False, now=NOW)
    assert line.verdict is Verdict.FAIL and "403" in line.reason and "archive writer role" in line.fix


@pytest.mark.parametrize("refused", [False, True])
async def test_state_and_queues_reachable_or_the_role_named(refused: bool) -> None:
    lines = [await state_line(FakeState(refused)), *await queue_lines(FakeQueue(refused))]
    expected = Verdict.FAIL if refused else Verdict.OK
    assert [line.verdict for line in lines] == [expected] * 3
    if refused:
        assert "Storage Blob Data Contributor" in lines[0].fix
        assert all("Storage Queue Data Contributor" in line.fix for line in lines[1:])
    else:
        assert "recording-chunks-poison" in lines[2].reason


@pytest.mark.parametrize(
    ("raises", "entra", "verdict", "named"),
    [
        (RecordingGoneError("404"), False, Verdict.OK, "HMAC signature was accepted"),
        (RecordingGoneError("404"), True, Verdict.OK, "Entra ID token was accepted"),
        (AcsAuthError("401 Unauthorized"), False, Verdict.FAIL, "access key"),
        (AcsAuthError("403 Forbidden"), True, Verdict.FAIL, "Communication and Email Service Owner"),
        (AcsTransientError("503"), True, Verdict.FAIL, "ACS_ENDPOINT"),
    ],
)
async def test_acs_takes_the_signature_or_the_missing_role_is_named(
    raises: Exception, entra: bool, verdict: Verdict, named: str
) -> None:
    acs = FakeAcs(raises)
    line = await acs_line(acs, "https://acs.communication.azure.com/", entra)
    assert line.verdict is verdict
    assert named in line.reason + line.fix
    [url] = acs.urls
    assert url.startswith("https://acs.communication.azure.com/recording/download/_check-")


async def test_the_topic_takes_a_test_event_when_configured() -> None:
    topic = FakeTopic()
    line = await topic_line(topic, "https://a.blob.core.windows.net/recordings", NOW)
    assert line.verdict is Verdict.OK
    [event] = topic.sent
    assert event.type is EventType.DEPLOYMENT_CHECK and event.subject == CHECK_PREFIX
    refused = await topic_line(FakeTopic(refused=True), "https://a", NOW)
    assert refused.verdict is Verdict.FAIL and "EventGrid Data Sender" in refused.fix
    off = await topic_line(None, "https://a", NOW)
    assert off.verdict is Verdict.NOT_CHECKABLE and "OUTBOUND_EVENTS_TOPIC_ENDPOINT" in off.reason


HOST = HostRules(function_timeout=55 * 60, queues=QueueRules(max_dequeue_count=5))


def test_host_json_and_settings_agree() -> None:
    lines = settings_lines({"ACS_ENDPOINT": "https://a.communication.azure.com"}, HOST, [])
    assert set(_verdicts(lines).values()) == {Verdict.OK}


@pytest.mark.parametrize(
    ("env", "host", "problems", "failed"),
    [
        (
            {"ACS_CONNECTION_STRING": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/acs/)"},
            HOST,
            [],
            ["key vault references"],
        ),
        ({}, HOST, ["ARCHIVE_CONTAINER is missing"], ["app settings"]),
        ({}, HOST, ["set ACS_CONNECTION_STRING", "set ARCHIVE_STORAGE_CONNECTION_STRING"], ["app settings"] * 2),
        ({}, HostRules(55 * 60, QueueRules(max_dequeue_count=1)), [], ["attempts and maxDequeueCount"]),
        ({}, HostRules(2 * 60 * 60, QueueRules()), [], ["functionTimeout and scale-in"]),
        ({}, HostRules(None, QueueRules()), [], ["functionTimeout and scale-in"]),
        ({}, ConfigurationError("host.json: functionTimeout is not a timespan"), [], ["host.json"]),
    ],
)
def test_each_disagreement_fails_its_line(
    env: dict[str, str], host: HostRules | ConfigurationError, problems: list[str], failed: list[str]
) -> None:
    lines = settings_lines(env, host, problems)
    assert [line.name for line in lines if line.verdict is Verdict.FAIL] == failed
    assert all(line.fix for line in lines if line.verdict is Verdict.FAIL)


async def test_the_whole_check_exits_0_only_when_every_checkable_line_is_ok() -> None:
    def targets(archive: FakeArchive, acs: FakeAcs) -> CheckTargets:
        return CheckTargets(archive, False, FakeState(), FakeQueue(), acs, "https://acs", True, None, "https://a")

    good = await run_checks(targets(FakeArchive("version"), FakeAcs()), NOW)
    assert exit_status(good) == 0 and Verdict.NOT_CHECKABLE in _verdicts(good).values()  # the topic is off
    bad = await run_checks(targets(FakeArchive("none"), FakeAcs(AcsAuthError("403"))), NOW)
    assert exit_status(bad) == 1
    text = render_text(bad)
    assert "FAIL                archive refuses a delete" in text and "fix: grant the app's identity" in text
    assert {line["verdict"] for line in json.loads(render_json(bad))} == {"ok", "FAIL", "not checkable here"}
