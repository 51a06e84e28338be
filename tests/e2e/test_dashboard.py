"""The workbook against the code: the scenario of devtools/dashboard.py through the local host (its worker
exporting as in Azure), then every table, log line, field and metric the workbook's queries name must be among
the records the run produced, and every panel must have something to show."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from devtools.dashboard import WORKBOOK, panels, produce_on, render
from tests.support.stack import Stack

# Where the worker's telemetry lands in Application Insights (README, Telemetry): log records and metrics.
WORKER_TABLES = {"traces", "customMetrics"}


def _queries() -> dict[str, str]:
    doc = json.loads(WORKBOOK.read_text())
    return {item["name"]: item["content"]["query"] for item in doc["items"] if item["type"] == 3}


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return []  # filled once by the first test that runs the scenario


async def _run(stack: Stack, tmp_path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not records:
        records.extend(await produce_on(stack.azurite, stack.simulator, tmp_path / "telemetry.jsonl"))
    return records


async def test_every_name_the_workbook_queries_is_one_the_code_emits(
    stack: Stack, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    run = await _run(stack, tmp_path, records)
    logs = [r for r in run if r["record"] == "log"]
    metrics = [r for r in run if r["record"] == "metric"]
    queries = _queries()
    assert len(queries) == 8
    for name, query in queries.items():
        table = query.split("\n", 1)[0].strip()
        assert table in WORKER_TABLES, f"{name}: {table}"
        fields = set(re.findall(r"customDimensions\.(\w+)", query))
        if table == "traces":
            [prefix] = re.findall(r'message startswith "([^"]+)"', query)
            matching = [r for r in logs if str(r["body"]).startswith(prefix)]
            assert matching, f"{name}: no log line starts with {prefix!r}"
            emitted = set().union(*(r["attributes"] for r in matching))
        else:
            [metric] = re.findall(r'name == "([^"]+)"', query)
            points = [m for m in metrics if m["name"] == metric]
            assert points, f"{name}: no metric {metric!r}"
            emitted = set().union(*(m["attributes"] for m in points))
        assert fields and fields <= emitted, f"{name}: {sorted(fields - emitted)} are not emitted"


async def test_the_scenario_gives_every_panel_something_to_show_and_the_picture_renders(
    stack: Stack, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    run = await _run(stack, tmp_path, records)
    data = panels(run)
    assert set(data) == set(_queries())
    assert {name for name, rows in data.items() if not rows} == set()
    assert [r["kind"] for r in data["failures-by-kind"]] == ["AcsPermanentError"]
    assert [r["recording_key"] for r in data["incomplete-nearest-deadline"]] == ["r-recB"]
    assert 2 < data["closest-call"][0]["min_hours_left"] < 3  # the recording published 21.5 h late
    picture = tmp_path / "dashboard.png"
    render(run, picture)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000
