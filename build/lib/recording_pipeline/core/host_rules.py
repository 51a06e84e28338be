"""The Functions host's rules for this app, read from host.json and app settings.

The app must know what the host will do to it: after how many deliveries the
host poisons a message (``extensions.queues.maxDequeueCount``), and when it
kills an invocation (``functionTimeout``). Both come from host.json, which any
app setting ``AzureFunctionsJobHost__<path>`` overrides
(https://learn.microsoft.com/azure/azure-functions/functions-host-json#override-hostjson-values).
One parser serves the app and the local host, so the two cannot disagree.

Defaults where host.json is silent are the host's own:
- ``maxDequeueCount`` 5, ``visibilityTimeout`` 0, ``batchSize`` 16 (at most 32),
  ``newBatchThreshold`` ``batchSize / 2`` per core, ``maxPollingInterval`` 1 minute
  (WebJobs queue extension, ``QueuesOptions``);
- ``functionTimeout`` 30 minutes on Flex Consumption, Premium and Dedicated, and
  ``-1`` for none (azure-functions-host ``ScriptJobHostOptionsSetup``; the Flex
  Consumption plan docs).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recording_pipeline.core.errors import ConfigurationError

OVERRIDE_PREFIX = "AzureFunctionsJobHost__"
DEFAULT_FUNCTION_TIMEOUT = 30 * 60.0
MAX_BATCH_SIZE = 32
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class QueueRules:
    """``extensions.queues`` of host.json, as the queue trigger applies it."""

    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0  # after a failed attempt, before the message is visible again
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"

    @property
    def concurrency(self) -> int:
        """Messages one instance runs at once: a batch plus the next one fetched at the threshold."""
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class HostRules:
    function_timeout: float | None  # seconds; None: no limit
    queues: QueueRules
    route_prefix: str = "api"

    @property
    def attempts_per_message(self) -> int:
        """Deliveries of one message on which the worker does real work.

        One fewer than ``maxDequeueCount``: when an attempt ends without an answer
        (process killed, timed out, out of memory) the message comes back with a
        higher dequeue count, and the host poisons a message that arrives above
        ``maxDequeueCount`` without running the function. The delivery numbered
        ``maxDequeueCount`` is kept for the app's own decision — try again later,
        or quarantine with the error — which it makes without any long work.
        """
        return self.queues.max_dequeue_count - 1

    def attempt_seconds(self, margin_fraction: float = 0.1, max_margin: float = 120.0) -> float | None:
        """How long one attempt may run before it ends itself, well inside ``functionTimeout``.

        A timeout is a failure *and* a restart of the worker process, which ends
        every other invocation running in it; an attempt that stops itself first
        fails alone, and leaves its staged blocks for the next one.
        """
        if self.function_timeout is None:
            return None
        return self.function_timeout - min(max_margin, self.function_timeout * margin_fraction)


def load_host_rules(host_json: Mapping[str, Any], env: Mapping[str, str]) -> HostRules:
    """host.json's content with the ``AzureFunctionsJobHost__`` app settings applied over it."""
    doc = _with_overrides(host_json, env)
    queues = _section(doc, "extensions", "queues")
    batch_size = _int(queues, "batchSize", 16, 1, MAX_BATCH_SIZE)
    rules = QueueRules(
        max_dequeue_count=_int(queues, "maxDequeueCount", 5, 2, 10_000),
        visibility_timeout=_timespan(queues, "visibilityTimeout", 0.0) or 0.0,
        batch_size=batch_size,
        new_batch_threshold=_int(queues, "newBatchThreshold", batch_size // 2, 0, 10_000),
        max_polling_interval=max(0.1, _timespan(queues, "maxPollingInterval", 60.0) or 60.0),
        message_encoding=str(_get(queues, "messageEncoding") or "base64").lower(),
    )
    if rules.message_encoding not in ("base64", "none"):
        raise ConfigurationError("host.json extensions.queues.messageEncoding must be base64 or none")
    timeout = _timespan(doc, "functionTimeout", DEFAULT_FUNCTION_TIMEOUT)
    if timeout is not None and timeout < 1:
        raise ConfigurationError("host.json functionTimeout must be at least 1 second")
    http = _section(doc, "extensions", "http")
    prefix = _get(http, "routePrefix")
    return HostRules(timeout, rules, "api" if prefix is None else str(prefix).strip("/"))


def read_host_rules(app_root: Path, env: Mapping[str, str] | None = None) -> HostRules:
    """The rules of the app in ``app_root`` (its host.json), with ``env`` (default: os.environ) over them."""
    try:
        host_json = json.loads((app_root / "host.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read host.json: {exc}") from None
    return load_host_rules(host_json, os.environ if env is None else env)


def parse_timespan(value: Any) -> float | None:
    """host.json's ``[d.]hh:mm:ss[.fff]`` (or ``-1``: no limit) as seconds, None for no limit."""
    text = str(value).strip()
    if text == "-1":
        return None
    match = _TIMESPAN.match(text)
    if not match:
        raise ConfigurationError(f"'{text}' is not a host.json time span ([d.]hh:mm:ss)")
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


def _with_overrides(host_json: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(host_json))
    for key, value in env.items():
        if not key.lower().startswith(OVERRIDE_PREFIX.lower()):
            continue
        path = [p for p in key[len(OVERRIDE_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = doc
        for part in path[:-1]:
            existing = _key(node, part)
            child = node.get(existing) if existing is not None else None
            if not isinstance(child, dict):
                child = {}
                node[existing or part] = child
            node = child
        node[_key(node, path[-1]) or path[-1]] = value
    return doc


def _key(node: Mapping[str, Any], name: str) -> str | None:
    """host.json keys are matched without regard to case, as the host's configuration does."""
    return next((k for k in node if k.lower() == name.lower()), None)


def _get(node: Mapping[str, Any], name: str) -> Any:
    key = _key(node, name)
    return None if key is None else node[key]


def _section(doc: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Any = doc
    for part in path:
        node = _get(node, part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _int(node: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = _get(node, name)
    if raw is None:
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigurationError(f"host.json {name}: expected a whole number, got '{raw}'") from None
    if not low <= value <= high:
        raise ConfigurationError(f"host.json {name}: must be between {low} and {high}, got {value}")
    return value


def _timespan(node: Mapping[str, Any], name: str, default: float | None) -> float | None:
    raw = _get(node, name)
    if raw is None:
        return default
    try:
        return parse_timespan(raw)
    except ConfigurationError as exc:
        raise ConfigurationError(f"host.json {name}: {exc}") from None
