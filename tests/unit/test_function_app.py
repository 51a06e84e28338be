"""function_app.py and host.json: what the Functions host will see in Azure."""

from __future__ import annotations

import json
import sys

import pytest

from devtools.worker_channel import FunctionInfo, HttpCall, InProcessWorker, TraceParent
from recording_pipeline.core.host_rules import load_host_rules
from recording_pipeline.core.settings import DEFAULT_QUEUE_NAME
from recording_pipeline.functions_adapter import RuntimeHolder
from tests.support.stack import REPO
from tests.unit.conftest import Loader

ROOT = REPO
HOST = json.loads((ROOT / "host.json").read_text())


def _holder() -> RuntimeHolder:
    holder = sys.modules["function_app"].runtime
    assert isinstance(holder, RuntimeHolder)
    return holder


def _functions(worker: InProcessWorker) -> dict[str, FunctionInfo]:
    return {f.name: f for f in worker.functions}


async def test_http_trigger_on_recording_events_with_function_auth(load: Loader) -> None:
    trigger = _functions(await load())["recording_events"]
    assert trigger.trigger == "httpTrigger"
    assert trigger.route == "recording-events"
    assert set(trigger.methods) == {"POST", "OPTIONS"}
    assert trigger.auth_level == "function"
    assert HOST["extensions"]["http"]["routePrefix"] == "api"


async def test_queue_trigger_on_the_chunk_queue_setting(load: Loader) -> None:
    trigger = _functions(await load())["archive_recording_chunk"]
    assert trigger.trigger == "queueTrigger"
    assert trigger.queue_name == "%CHUNK_QUEUE_NAME%"
    assert trigger.connection == "AzureWebJobsStorage"
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    assert sample["Values"]["CHUNK_QUEUE_NAME"] == DEFAULT_QUEUE_NAME


async def test_the_fixity_audit_is_an_hourly_timer_whose_slice_is_a_day_s_budget_over_its_runs(load: Loader) -> None:
    import itertools
    from datetime import UTC, datetime

    from devtools.ncrontab import Schedule
    from recording_pipeline.app.fixity import RUN_INTERVAL_SECONDS

    trigger = _functions(await load())["fixity_audit"]
    assert (trigger.trigger, trigger.run_on_startup) == ("timerTrigger", False)
    schedule = Schedule.parse(trigger.schedule or "")
    runs = [schedule.next_after(datetime(2026, 12, 1, tzinfo=UTC))]
    for _ in range(48):  # two days of runs
        runs.append(schedule.next_after(runs[-1]))
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(runs)} == {RUN_INTERVAL_SECONDS}


async def test_a_configuration_error_declares_no_queue_trigger_and_the_webhook_answers_503(
    caplog: pytest.LogCaptureFixture, load: Loader
) -> None:
    """Nothing takes a message while the settings cannot be used; Event Grid keeps retrying the events."""
    unresolved = "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/acs-connection-string/)"
    app = await load(ACS_CONNECTION_STRING=unresolved)
    # What the configuration alert (infra/modules/alerts.bicep) looks for.
    assert any(r.levelname == "CRITICAL" and "configuration error" in r.getMessage() for r in caplog.records)
    functions = _functions(app)
    assert set(functions) == {"recording_events"}
    call = HttpCall("POST", "http://h/api/recording-events", {}, {}, b"[]")
    result = await app.invoke_http(functions["recording_events"], call, TraceParent.new())
    assert result.status == 503 and result.headers["Retry-After"]
    assert b"ACS_CONNECTION_STRING is an unresolved Key Vault reference" in result.body


def test_host_json_fits_multi_gigabyte_chunks() -> None:
    rules = load_host_rules(HOST, {})
    # The largest chunk (4 h of 5-channel wav, ~2.3 GB) at a pessimistic 2 MB/s, twice over, fits in one attempt.
    attempt = rules.attempt_seconds()
    assert attempt is not None and attempt >= 2 * 2.3e9 / 2e6
    # Memory does not grow with the chunks in flight (one buffer budget per process, tests/unit/test_transfer.py);
    # what does is the scale controller's target per instance, batchSize + newBatchThreshold (QueueTargetScaler).
    assert 8 <= rules.queues.concurrency <= 32


@pytest.mark.parametrize("override", [None, "8"])
async def test_the_app_s_attempts_sit_below_the_host_s_max_dequeue_count(override: str | None, load: Loader) -> None:
    """The app decides a job's fate on the delivery before the host would poison it, host.json or app setting."""
    env = {"AzureFunctionsJobHost__extensions__queues__maxDequeueCount": override} if override else {}
    await load(**env)
    holder = _holder()
    host_max = int(override or HOST["extensions"]["queues"]["maxDequeueCount"])
    assert holder.config.host.queues.max_dequeue_count == host_max
    assert holder.config.host.attempts_per_message == host_max - 1


async def test_an_attempt_ends_itself_inside_the_function_timeout(load: Loader) -> None:
    await load(AzureFunctionsJobHost__functionTimeout="00:10:00")
    holder = _holder()
    attempt = holder.config.host.attempt_seconds()
    assert attempt is not None and 0 < attempt < 600


def test_the_readme_states_host_json_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## host.json, and why") : readme.index("## Deploy")]
    queues = HOST["extensions"]["queues"]
    for stated in (
        f"`functionTimeout: {HOST['functionTimeout']}`",
        f"`extensions.queues.messageEncoding: {queues['messageEncoding']}`",
        f"`maxDequeueCount: {queues['maxDequeueCount']}`",
        f"`visibilityTimeout: {queues['visibilityTimeout']}`",
        f"`batchSize: {queues['batchSize']}`",
        f"`newBatchThreshold: {queues['newBatchThreshold']}`",
    ):
        assert stated in section
    rules = load_host_rules(HOST, {})
    assert f"{rules.attempts_per_message} working attempts" in section.replace("four", "4")


@pytest.mark.parametrize("redrive", ["true", "false"])
async def test_the_dead_letter_timer_runs_every_five_minutes_whether_it_redrives_or_not(
    redrive: str, load: Loader
) -> None:
    """Off, it still counts what waits in the dead-letter container, for the alert (functions_adapter)."""
    from datetime import UTC, datetime

    from devtools.ncrontab import Schedule
    from recording_pipeline.functions_adapter import DEADLETTER_SCHEDULE

    timer = _functions(await load(DEADLETTER_REDRIVE_ON_SCHEDULE=redrive))["deadletter_redrive"]
    assert (timer.trigger, timer.schedule) == ("timerTrigger", DEADLETTER_SCHEDULE)
    schedule, moment = Schedule.parse(DEADLETTER_SCHEDULE), datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    first = schedule.next_after(moment)
    assert (first - moment).total_seconds() == 15 and (schedule.next_after(first) - first).total_seconds() == 300
