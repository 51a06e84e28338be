"""``recording-archive check``: a deployment that proves itself, one line per assumption the Guarantees rest on.

Read-mostly: it creates one canary blob under ``_check/`` in the archive (and tries
to overwrite, re-tag and delete it, which WORM must refuse), sends one signed GET
for a recording that does not exist, and, when outbound events are on, one test
event. Run it as the operator or as the app's identity, after every deploy; ``azd``'s
postdeploy hook runs it. Exit 0 only when every line that could be checked is ok.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from recording_pipeline.core.deployment_check import (
    CHECK_PREFIX,
    Answer,
    CheckLine,
    Versions,
    exit_status,
    fail,
    not_checkable,
    ok,
    render_json,
    render_text,
    settings_lines,
)
from recording_pipeline.core.errors import (
    AcsAuthError,
    AcsError,
    ConfigurationError,
    PublishError,
    RecordingGoneError,
    StorageError,
)
from recording_pipeline.core.host_rules import HostRules, read_host_rules
from recording_pipeline.core.outbound import EventType, OutboundEvent
from recording_pipeline.core.settings import Settings, setting_problems
from recording_pipeline.edges.retry import RetryPolicy

ACS_ROLE = "Communication and Email Service Owner (or the custom role infra/ grants) on the ACS resource"
WORM_CHANGES = ("an overwrite", "a metadata change", "a delete")
NO_WORM_FIX = (
    "deploy the archive with version-level immutability (infra/modules/archive-storage.bicep, retentionDays), "
    "or enable it on the container (docs/DEPLOY.md)"
)
ROLE_FIRST_FIX = "run check as the operator (Storage Blob Data Owner on the archive) to reach the immutability policy"
# How long a line that talks to ACS or the topic may wait for an answer: a dead endpoint is a FAIL within this, not
# after the ACS client's retries (8 tries, 30 s to connect each) or the topic client's.
LINE_SECONDS = 10.0
REACH_FIX = "check the endpoint setting and that this machine can reach it (firewall, private endpoint, VPN)"


class ArchiveProbe(Protocol):
    async def create(self, name: str, data: bytes) -> Answer: ...
    async def overwrite(self, name: str, data: bytes) -> Answer: ...
    async def set_metadata(self, name: str, metadata: dict[str, str]) -> Answer: ...
    async def delete(self, name: str) -> Answer: ...
    async def versions(self, name: str) -> Versions: ...


class Listable(Protocol):
    def list_names(self, prefix: str) -> AsyncIterator[str]: ...


class QueueProbe(Protocol):
    poison_name: str

    async def job_count(self) -> int: ...
    async def poison_count(self) -> int: ...


class MetadataSource(Protocol):
    async def fetch_metadata(self, url: str) -> bytes: ...


class Publisher(Protocol):
    async def publish(self, events: list[OutboundEvent]) -> None: ...


@dataclass
class CheckTargets:
    """What the check talks to: the app's own edges, built from the app's settings with the running identity."""

    archive: ArchiveProbe
    emulator: bool  # Azurite: no immutability to prove
    state: Listable
    queue: QueueProbe
    acs: MetadataSource
    acs_endpoint: str
    acs_uses_entra: bool
    publisher: Publisher | None
    archive_url: str
    topic_endpoint: str = ""


def canary_name(now: datetime) -> str:
    return f"{CHECK_PREFIX}{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}.txt"


async def archive_lines(archive: ArchiveProbe, emulator: bool, now: datetime) -> list[CheckLine]:
    name = canary_name(now)
    created = await archive.create(name, f"recording-archive check {now.isoformat()}\n".encode())
    if not created.accepted:
        return [
            fail(
                "archive accepts a create",
                f"creating {name} was refused ({created.status} {created.code})",
                "give the identity the archive writer role on the archive container (infra/ rbac), and check "
                "ARCHIVE_CONTAINER exists",
            )
        ]
    lines = [ok("archive accepts a create", f"created {name}")]
    if emulator:
        reason = "Azurite implements no immutability policies or legal holds; WORM is proved only in Azure"
        fix = "run check against the deployed archive; locally the write-once guard of make test and make demo holds"
        return [*lines, *(not_checkable(f"archive refuses {what}", reason, fix) for what in WORM_CHANGES)]
    return [*lines, await _overwrite_line(archive, name), *await _change_lines(archive, name)]


async def _overwrite_line(archive: ArchiveProbe, name: str) -> CheckLine:
    what = "archive refuses an overwrite"
    answer = await archive.overwrite(name, b"overwritten by recording-archive check\n")
    if answer.refused_by_worm:
        return ok(what, f"refused ({answer.code})")
    if not answer.accepted:
        return not_checkable(what, f"refused by {answer.status} {answer.code}, not by WORM", ROLE_FIRST_FIX)
    # Version-level WORM takes a Put Blob over an existing blob as a new version and keeps the first immutable.
    versions = await archive.versions(name)
    if versions.count >= 2 and versions.first_immutable_until:
        return ok(what, f"kept: a new version was made, the first is immutable until {versions.first_immutable_until}")
    return fail(
        what, "an overwrite was accepted and the original is not kept immutable: WORM is not active", NO_WORM_FIX
    )


async def _change_lines(archive: ArchiveProbe, name: str) -> list[CheckLine]:
    lines = []
    for what, answer in (
        ("a metadata change", await archive.set_metadata(name, {"changed_by": "check"})),
        ("a delete", await archive.delete(name)),
    ):
        title = f"archive refuses {what}"
        if answer.refused_by_worm:
            lines.append(ok(title, f"refused ({answer.code})"))
        elif not answer.accepted:
            lines.append(not_checkable(title, f"refused by {answer.status} {answer.code}, not by WORM", ROLE_FIRST_FIX))
        else:
            lines.append(fail(title, f"{what} of an archived blob was accepted: WORM is not active", NO_WORM_FIX))
    return lines


async def state_line(state: Listable) -> CheckLine:
    try:
        async for _name in state.list_names(CHECK_PREFIX):
            break
    except StorageError as exc:
        return fail(
            "state container reachable",
            str(exc),
            "give the identity Storage Blob Data Contributor on ARCHIVE_STATE_CONTAINER, and check it exists",
        )
    return ok("state container reachable", "listed with the configured identity")


async def queue_lines(queue: QueueProbe) -> list[CheckLine]:
    lines = []
    for title, count in (("chunk queue reachable", queue.job_count), ("poison queue reachable", queue.poison_count)):
        try:
            found = await count()
        except StorageError as exc:
            lines.append(
                fail(title, str(exc), "give the identity Storage Queue Data Contributor on the Functions storage")
            )
            continue
        suffix = f" ({queue.poison_name})" if title.startswith("poison") else ""
        lines.append(ok(title, f"{found} messages waiting{suffix}"))
    return lines


async def acs_line(acs: MetadataSource, endpoint: str, uses_entra: bool) -> CheckLine:
    """A signed GET for a recording that does not exist: 404 means ACS took the signature or the token."""
    title = "ACS accepts a signed request"
    url = f"{endpoint.rstrip('/')}/recording/download/_check-{secrets.token_hex(8)}/metadata"
    how = "an Entra ID token" if uses_entra else "an HMAC signature"
    try:
        await acs.fetch_metadata(url)
    except RecordingGoneError:
        return ok(title, f"{how} was accepted (404 for a recording that does not exist)")
    except AcsAuthError as exc:
        fix = (
            f"grant the app's identity {ACS_ROLE}"
            if uses_entra
            else "ACS_CONNECTION_STRING's access key is not the resource's: copy it again from the ACS resource's keys"
        )
        return fail(title, f"ACS refused {how}: {exc}", fix)
    except AcsError as exc:
        return fail(title, f"ACS answered: {exc}", "check ACS_ENDPOINT / ACS_CONNECTION_STRING's endpoint")
    return fail(title, "ACS served a recording that cannot exist", "check ACS_ENDPOINT points at the ACS resource")


async def topic_line(publisher: Publisher | None, archive_url: str, now: datetime) -> CheckLine:
    title = "outbound events topic takes an event"
    if publisher is None:
        return not_checkable(title, "outbound events are off (OUTBOUND_EVENTS_TOPIC_ENDPOINT is unset)")
    event = OutboundEvent(
        id=secrets.token_hex(16),
        type=EventType.DEPLOYMENT_CHECK,
        source=archive_url,
        subject=CHECK_PREFIX,
        time=now,
        data={"schema": 1, "checkedAt": now.isoformat()},
    )
    try:
        await publisher.publish([event])
    except PublishError as exc:
        return fail(title, str(exc), "give the app's identity EventGrid Data Sender on the topic, check the endpoint")
    return ok(title, f"took a {EventType.DEPLOYMENT_CHECK.value} event")


async def run_checks(targets: CheckTargets, now: datetime) -> list[CheckLine]:
    """Every line; a part that cannot be reached fails its own line, naming the endpoint, and the others still run."""
    try:
        archive = await archive_lines(targets.archive, targets.emulator, now)
    except StorageError as exc:
        account = targets.archive_url.rsplit("/", 1)[0]
        archive = [fail("archive accepts a create", f"no answer from {account}: {exc}", REACH_FIX)]
    return [
        *archive,
        await state_line(targets.state),
        *await queue_lines(targets.queue),
        await _within(
            "ACS accepts a signed request",
            targets.acs_endpoint,
            acs_line(targets.acs, targets.acs_endpoint, targets.acs_uses_entra),
        ),
        await _within(
            "outbound events topic takes an event",
            targets.topic_endpoint,
            topic_line(targets.publisher, targets.archive_url, now),
        ),
    ]


async def _within(title: str, endpoint: str, line: Awaitable[CheckLine]) -> CheckLine:
    try:
        async with asyncio.timeout(LINE_SECONDS):
            return await line
    except TimeoutError:
        return fail(title, f"no answer from {endpoint or 'the endpoint'} within {LINE_SECONDS:.0f} s", REACH_FIX)


def is_emulator(account_url: str) -> bool:
    parts = urlsplit(account_url)
    return parts.hostname in {"127.0.0.1", "localhost"} or "devstoreaccount1" in parts.path


async def check(env: Mapping[str, str], app_root: Path, as_json: bool = False) -> int:
    """Every line, printed; the exit status."""
    from recording_pipeline.cli.storage import OPERATOR_LIMITS
    from recording_pipeline.runtime import Runtime, open_worm_probe

    host: HostRules | ConfigurationError
    try:
        host = read_host_rules(app_root, env)
    except ConfigurationError as exc:
        host = exc
    problems = setting_problems(env)
    settings = None
    if not problems:
        try:
            settings = Settings.from_env(env)
        except ConfigurationError as exc:  # an unresolved Key Vault reference: its own line names it too
            problems = [str(exc)]
    lines = settings_lines(env, host, problems)
    now = datetime.now(UTC)
    if settings is None:
        lines.append(not_checkable("storage, queues, ACS, topic", "the app settings cannot be used (above)"))
    else:
        runtime = await Runtime.build(
            _impatient(settings),
            host if isinstance(host, HostRules) else None,
            RetryPolicy(attempts=2, initial_wait=0.5, max_wait=1, budget_seconds=LINE_SECONDS),
            ensure=False,
            storage_options=OPERATOR_LIMITS,
        )
        probe = open_worm_probe(settings.archive, runtime.credential, **OPERATOR_LIMITS)
        try:
            targets = CheckTargets(
                archive=probe,
                emulator=is_emulator(runtime.archive.url),
                state=runtime.state,
                queue=runtime.queue,
                acs=runtime.acs,
                acs_endpoint=settings.acs.credentials.endpoint,
                acs_uses_entra=settings.acs.credentials.access_key is None,
                publisher=runtime.publisher,
                archive_url=runtime.archive.url,
                topic_endpoint=settings.events.endpoint or "",
            )
            lines.extend(await run_checks(targets, now))
        finally:
            await probe.close()
            await runtime.close()
    print(render_json(lines) if as_json else render_text(lines))
    return exit_status(lines)


def _impatient(settings: Settings) -> Settings:
    """The app's settings with the ACS client's read timeout cut to a line's (the worker waits 60 s by default)."""
    acs = replace(settings.acs, read_timeout_seconds=min(settings.acs.read_timeout_seconds, LINE_SECONDS))
    return replace(settings, acs=acs)


def main_check(as_json: bool, app_root: Path | None = None) -> int:
    root = app_root or Path(__file__).resolve().parents[2]  # function_app.py and host.json beside the package
    return asyncio.run(check(dict(os.environ), root, as_json))
