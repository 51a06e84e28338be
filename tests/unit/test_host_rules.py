"""host.json and its app-setting overrides, read the way the Functions host reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.core.host_rules import (
    DEFAULT_FUNCTION_TIMEOUT,
    HostRules,
    QueueRules,
    load_host_rules,
    parse_timespan,
    read_host_rules,
)
from tests.support.stack import REPO

ROOT = REPO


def test_the_host_s_defaults_where_host_json_is_silent() -> None:
    rules = load_host_rules({"version": "2.0"}, {})
    assert rules == HostRules(DEFAULT_FUNCTION_TIMEOUT, QueueRules(5, 0.0, 16, 8, 60.0, "base64"), "api")
    assert rules.queues.concurrency == 24


# On Flex Consumption (and Premium) an execution still running when its instance is scaled in gets 60 minutes of
# grace, then the instance goes, whatever functionTimeout says (MicrosoftDocs/azure-docs,
# includes/functions-timeout-duration.md, note 2). An attempt that ends itself inside both never dies that way.
SCALE_IN_GRACE_SECONDS = 60 * 60


def test_this_app_s_host_json() -> None:
    rules = read_host_rules(ROOT, {})
    assert rules.function_timeout == 55 * 60
    attempt = rules.attempt_seconds()
    assert attempt is not None and attempt < rules.function_timeout <= SCALE_IN_GRACE_SECONDS
    assert rules.queues == QueueRules(5, 30.0, 16, 8, 2.0, "base64")
    assert rules.attempts_per_message == 4


def test_app_settings_override_host_json_whatever_their_case() -> None:
    env = {
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "9",
        "azurefunctionsjobhost__Extensions__Queues__BatchSize": "1",
        "AzureFunctionsJobHost__functionTimeout": "00:05:00",
        "AzureFunctionsJobHost__extensions__http__routePrefix": "",
        "UNRELATED": "x",
    }
    rules = load_host_rules(json.loads((ROOT / "host.json").read_text()), env)
    assert (rules.queues.max_dequeue_count, rules.queues.batch_size, rules.function_timeout) == (9, 1, 300.0)
    assert rules.route_prefix == ""
    assert rules.queues.new_batch_threshold == 8  # from host.json, untouched


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00:30", 30.0), ("02:00:00", 7200.0), ("1.00:00:01", 86401.0), ("00:00:00.2", 0.2), ("-1", None)],
)
def test_time_spans(text: str, seconds: float | None) -> None:
    assert parse_timespan(text) == seconds


def test_no_function_timeout_means_no_attempt_deadline() -> None:
    rules = load_host_rules({"functionTimeout": "-1"}, {})
    assert rules.function_timeout is None and rules.attempt_seconds() is None


@pytest.mark.parametrize(("timeout", "attempt"), [(7200.0, 7080.0), (600.0, 540.0), (8.0, 7.2)])
def test_an_attempt_ends_well_inside_the_function_timeout(timeout: float, attempt: float) -> None:
    assert HostRules(timeout, QueueRules()).attempt_seconds() == pytest.approx(attempt)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("functionTimeout", "2 hours", "functionTimeout"),
        ("functionTimeout", "00:00:00.5", "at least 1 second"),
        ("extensions__queues__maxDequeueCount", "1", "maxDequeueCount: must be between 2"),
        ("extensions__queues__maxDequeueCount", "five", "maxDequeueCount: expected a whole number"),
        ("extensions__queues__batchSize", "33", "batchSize: must be between 1 and 32"),
        ("extensions__queues__messageEncoding", "utf8", "messageEncoding"),
    ],
)
def test_values_the_host_would_refuse_or_the_app_cannot_keep_its_promises_under(
    key: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_host_rules({}, {f"AzureFunctionsJobHost__{key}": value})


def test_an_unreadable_host_json_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match=r"host\.json"):
        read_host_rules(tmp_path, {})
