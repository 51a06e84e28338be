"""``recording-archive check``'s verdicts, and the checks that need no I/O: does the deployment keep its promises?

Each line is one assumption the Guarantees rest on, with what was found and, when
it failed, what to do. ``ok`` and ``FAIL`` are what was proved here; ``not checkable
here`` says why not (the emulator has no WORM; the identity cannot see it; a feature
is off), so nothing passes by being skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.host_rules import HostRules

# Flex Consumption gives a running execution 60 minutes of grace when its instance is scaled in (azure-docs,
# includes/functions-timeout-duration.md): a longer functionTimeout is cut off there, not at its own limit.
SCALE_IN_GRACE_SECONDS = 60 * 60
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
CHECK_PREFIX = "_check/"  # the reserved prefix of the canary blobs in the archive


IMMUTABILITY_CODES = frozenset({"BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold"})


@dataclass(frozen=True)
class Answer:
    """What the service said to one request: accepted, or refused with its status and error code."""

    accepted: bool
    status: int = 200
    code: str = ""

    @property
    def refused_by_worm(self) -> bool:
        return not self.accepted and self.code in IMMUTABILITY_CODES


@dataclass(frozen=True)
class Versions:
    count: int  # versions of the blob, the current one included
    first_immutable_until: str | None  # the oldest version's immutability expiry, if it has one


class Verdict(StrEnum):
    OK = "ok"
    FAIL = "FAIL"
    NOT_CHECKABLE = "not checkable here"


@dataclass(frozen=True)
class CheckLine:
    name: str
    verdict: Verdict
    reason: str
    fix: str = ""


def ok(name: str, reason: str) -> CheckLine:
    return CheckLine(name, Verdict.OK, reason)


def fail(name: str, reason: str, fix: str) -> CheckLine:
    return CheckLine(name, Verdict.FAIL, reason, fix)


def not_checkable(name: str, reason: str, fix: str = "") -> CheckLine:
    return CheckLine(name, Verdict.NOT_CHECKABLE, reason, fix)


def exit_status(lines: Sequence[CheckLine]) -> int:
    """0 only when every line that could be checked is ok."""
    return 1 if any(line.verdict is Verdict.FAIL for line in lines) else 0


def render_text(lines: Sequence[CheckLine]) -> str:
    width = max((len(line.verdict.value) for line in lines), default=2)
    out = []
    for line in lines:
        out.append(f"{line.verdict.value:<{width}}  {line.name}: {line.reason}")
        if line.fix:
            out.append(f"{'':<{width}}  fix: {line.fix}")
    return "\n".join(out)


def render_json(lines: Sequence[CheckLine]) -> str:
    return json.dumps([{**asdict(line), "verdict": line.verdict.value} for line in lines], indent=1)


def unresolved_references(env: Mapping[str, str]) -> list[str]:
    """App settings that reach the app as the literal text of a Key Vault reference (not resolved by the platform)."""
    return sorted(name for name, value in env.items() if value.strip().startswith(KEY_VAULT_REFERENCE))


def settings_lines(
    env: Mapping[str, str], host: HostRules | ConfigurationError, problems: Sequence[str] = ()
) -> list[CheckLine]:
    """What host.json and the app settings must agree on for the host's rules and the app's to hold together.
    ``problems``: every setting the app cannot use (core.settings.setting_problems), each a FAIL line."""
    lines: list[CheckLine] = []
    unresolved = unresolved_references(env)
    if unresolved:
        lines.append(
            fail(
                "key vault references",
                f"{', '.join(unresolved)} reached the app unresolved (the literal @Microsoft.KeyVault(...) text)",
                "grant the app's identity Key Vault Secrets User on the vault, check the SecretUri, then restart",
            )
        )
    else:
        lines.append(ok("key vault references", "no setting is an unresolved Key Vault reference"))
    for problem in problems:
        lines.append(fail("app settings", problem, "set the variable as README's Configuration says"))
    if not problems:
        lines.append(ok("app settings", "every setting the app reads is present and well-formed"))
    if isinstance(host, ConfigurationError):
        lines.append(fail("host.json", str(host), "correct host.json or its AzureFunctionsJobHost__ override"))
        return lines
    deliveries = host.queues.max_dequeue_count
    if 1 <= host.attempts_per_message < deliveries:
        lines.append(
            ok(
                "attempts and maxDequeueCount",
                f"{host.attempts_per_message} working attempts, then the app decides on delivery {deliveries}, "
                "before the host would poison the message",
            )
        )
    else:
        lines.append(
            fail(
                "attempts and maxDequeueCount",
                f"maxDequeueCount {deliveries} leaves the app no delivery of its own to decide on",
                "set extensions.queues.maxDequeueCount to 2 or more (host.json: 5)",
            )
        )
    timeout = host.function_timeout
    if timeout is not None and timeout <= SCALE_IN_GRACE_SECONDS:
        lines.append(
            ok(
                "functionTimeout and scale-in",
                f"functionTimeout {timeout / 60:.0f} min ends an attempt inside the {SCALE_IN_GRACE_SECONDS // 60} "
                "min a scale-in gives it",
            )
        )
    else:
        shown = "unbounded" if timeout is None else f"{timeout / 60:.0f} min"
        lines.append(
            fail(
                "functionTimeout and scale-in",
                f"functionTimeout {shown}: a scale-in ends the execution after {SCALE_IN_GRACE_SECONDS // 60} min "
                "before the attempt can end itself and keep its progress",
                f"set functionTimeout to {_hh_mm(SCALE_IN_GRACE_SECONDS)}:00 or less (host.json: 00:55:00)",
            )
        )
    return lines


def _hh_mm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}"
