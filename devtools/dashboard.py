"""The dashboard drawn from a local run: the workbook's panels (infra/modules/workbook.json), computed from what the
local worker exported, the way each panel's query computes them in Application Insights.

``python -m devtools.dashboard`` starts Azurite, the ACS simulator and the local Functions host (its worker
exporting telemetry as JSON lines, as ``python -m devtools.local_host`` does), plays a backlog of recordings
through the webhook (fresh and old events, an attempt that fails once, a chunk ACS no longer has, a chunk that
fails until it is quarantined, a recording still missing chunks), runs the poison-depth timer, and writes
``docs/dashboard.png``. tests/e2e/test_dashboard.py runs the same scenario and checks every name the workbook's
queries use against the records it produced.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from devtools.devstack import REPO, Azurite
from devtools.ingestion import LoopbackIngestion, read_records
from devtools.local_host import LocalFunctionsHost
from devtools.loopback import serve_app
from devtools.simulator import Fault, RecordingSimulator, SimRecording
from devtools.worker_channel import SubprocessWorker

WORKBOOK = REPO / "infra" / "modules" / "workbook.json"
MIB = 1024 * 1024
HOUR = 3600.0


# --- the scenario -----------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """Where to post events, and how to see what the worker exported so far."""

    simulator: RecordingSimulator
    webhook_url: str
    key: str
    telemetry: Path

    async def post(self, event: dict[str, Any]) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook_url, json=[event], headers={"x-functions-key": self.key}) as response,
        ):
            if response.status != 200:
                raise RuntimeError(f"the webhook answered {response.status}: {await response.text()}")

    def logs(self, prefix: str) -> list[dict[str, Any]]:
        records = read_records(self.telemetry) if self.telemetry.exists() else []
        return [r for r in records if r["record"] == "log" and str(r["body"]).startswith(prefix)]

    async def until(self, what: str, done: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the scenario waited {timeout:.0f} s for {what}")
            await asyncio.sleep(0.2)


def aged(event: dict[str, Any], hours: float) -> dict[str, Any]:
    """The event as if ACS had published it ``hours`` ago (the recording ended a minute before that)."""
    shift = timedelta(hours=hours)
    data = dict(event["data"])
    data["recordingStartTime"] = (datetime.fromisoformat(data["recordingStartTime"]) - shift).isoformat()
    return {**event, "data": data, "eventTime": (datetime.fromisoformat(event["eventTime"]) - shift).isoformat()}


def _chunks(sim: RecordingSimulator, call: str, sizes: list[int]) -> list[SimRecording]:
    return [sim.add(f"0-eus-d3-{call[:8]}{i:024d}", size, call_id=call, chunk_index=i) for i, size in enumerate(sizes)]


async def play(scenario: Scenario, run_timer: Callable[[str], Awaitable[bool]]) -> None:
    """The backlog, phase by phase (the simulator's faults are not per document)."""
    sim = scenario.simulator

    def all_deleted(chunks: list[SimRecording]) -> Callable[[], bool]:
        return lambda: all(c.document_id in sim.deleted for c in chunks)

    # An attempt refused once by ACS (400), archived by the next.
    flaky = _chunks(sim, "cccccccc-0000-0000-0000-00000000000c", [3 * MIB, 2 * MIB])
    sim.faults.append(Fault(kind="metadata", status=400, times=1))
    await scenario.post(aged(sim.event(flaky[0].call_id, "recC", flaky), 14))
    await scenario.until("the flaky recording", all_deleted(flaky))
    # Six minutes before ACS's deadline, and every attempt refused: quarantined.
    doomed = _chunks(sim, "eeeeeeee-0000-0000-0000-00000000000e", [MIB])
    failing = Fault(kind="metadata", status=400, times=1000)
    sim.faults.append(failing)
    await scenario.post(aged(sim.event(doomed[0].call_id, "recE", doomed), 23.9))
    await scenario.until("the quarantine", lambda: bool(scenario.logs("recording chunk failed after")))
    failing.times = 0
    # Fresh and older recordings, one still missing its last chunks, and a chunk ACS no longer has.
    complete = _chunks(sim, "aaaaaaaa-0000-0000-0000-00000000000a", [8 * MIB, 8 * MIB, 5 * MIB])
    partial = _chunks(sim, "bbbbbbbb-0000-0000-0000-00000000000b", [6 * MIB, 6 * MIB])
    late = _chunks(sim, "ffffffff-0000-0000-0000-00000000000f", [4 * MIB])
    lost = _chunks(sim, "dddddddd-0000-0000-0000-00000000000d", [MIB])
    await scenario.post(sim.event(complete[0].call_id, "recA", complete))
    await scenario.post(aged(sim.event(partial[0].call_id, "recB", partial, final_index=3), 6))
    await scenario.post(aged(sim.event(late[0].call_id, "recF", late), 21.5))
    lost_event = aged(sim.event(lost[0].call_id, "recD", lost), 2)
    del sim.recordings[lost[0].document_id]  # expired at ACS before its job ran
    await scenario.post(lost_event)
    await scenario.until("the backlog", all_deleted(complete + partial + late))
    await scenario.until("the lost chunk", lambda: bool(scenario.logs("recording chunk lost")))
    if not await run_timer("poison_depth"):
        raise RuntimeError("the poison_depth timer failed")


def environment(azurite: Azurite, sim: RecordingSimulator, telemetry: Path, key: str) -> dict[str, str]:
    """The local host's app settings: the worker exports as in Azure, into ``telemetry``; retries come fast."""
    suffix = secrets.token_hex(4)
    return {
        **os.environ,
        "ACS_CONNECTION_STRING": sim.connection_string,
        "ARCHIVE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "ARCHIVE_CONTAINER": f"rec-dash-{suffix}",
        "ARCHIVE_STATE_CONTAINER": f"state-dash-{suffix}",
        "CHUNK_QUEUE_NAME": f"chunks-dash-{suffix}",
        "RECORDING_ALLOWED_HOSTS": "127.0.0.1",
        "RECORDING_ALLOW_HTTP": "true",
        "WEBHOOK_KEY": key,
        "QUEUE_REQUEUE_DELAY_SECONDS": "1",
        "ACS_RETRY_ATTEMPTS": "2",
        "ACS_RETRY_INITIAL_WAIT_SECONDS": "0.05",
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.2",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME": "recording_pipeline",
        # Export every half second (OpenTelemetry's own settings; the defaults are 5 s and 60 s).
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "OTEL_BLRP_SCHEDULE_DELAY": "500",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }


# --- the panels, computed as the workbook's queries compute them -------------------------------------------------


def _when(record: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(record["time"]) / 1e9, UTC)


def _hour(record: Mapping[str, Any]) -> datetime:
    return _when(record).replace(minute=0, second=0, microsecond=0)


def panels(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """One row list per workbook item (by its name), from the local exporter's records."""
    logs = [r for r in records if r["record"] == "log"]
    metrics = [r for r in records if r["record"] == "metric"]

    def lines(prefix: str) -> list[dict[str, Any]]:
        return [r for r in logs if str(r["body"]).startswith(prefix)]

    archived = lines("recording chunk archived")
    per_hour: dict[datetime, list[int]] = defaultdict(list)
    for r in archived:  # customDimensions are strings, as Application Insights keeps them
        per_hour[_hour(r)].append(int(r["attributes"]["bytes"]))
    left = [float(r["attributes"]["seconds_left"]) / HOUR for r in archived]
    by_bin: dict[int, int] = defaultdict(int)
    for hours in left:
        by_bin[int(hours // 1)] += 1
    failures: dict[str, float] = defaultdict(float)
    for m in metrics:
        if m["name"] == "recording.chunk.failures":
            failures[str(m["attributes"]["kind"])] += float(m["value"])
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in lines("recording state"):
        latest[(r["attributes"]["call_id"], r["attributes"]["recording_key"])] = r["attributes"]
    incomplete = sorted(
        (a for a in latest.values() if a["recording_state"] == "incomplete"), key=lambda a: a["expires_at"]
    )
    latencies = [float(r["attributes"]["event_to_delete_seconds"]) for r in lines("recording chunk deleted from ACS")]
    identity = ("call_id", "recording_id", "chunk_index", "document_id", "event_id")
    return {
        "archived-per-hour": [
            {"hour": h, "chunks": len(b), "GiB": sum(b) / 2**30} for h, b in sorted(per_hour.items())
        ],
        "time-left-distribution": [{"hours_left": h, "chunks": n} for h, n in sorted(by_bin.items())],
        "closest-call": [{"min_hours_left": min(left), "chunks": len(left)}] if left else [],
        "failures-by-kind": [{"kind": k, "failures": v} for k, v in sorted(failures.items())],
        "lost-chunks": [{k: r["attributes"][k] for k in identity} for r in lines("recording chunk lost")],
        "poison-depth": [
            {"time": _when(m), "depth": float(m["value"]), "queue": m["attributes"]["queue"]}
            for m in metrics
            if m["name"] == "recording.poison_queue.depth"
        ],
        "incomplete-nearest-deadline": [
            {
                "call_id": a["call_id"],
                "recording_key": a["recording_key"],
                "chunks": f"{a['chunks_archived']} of {'?' if int(a['chunks_total']) < 0 else a['chunks_total']}",
                "hours_to_deadline": float(a["seconds_to_deadline"]) / HOUR,
            }
            for a in incomplete
        ],
        "event-to-delete": (
            [
                {
                    "p50": statistics.median(latencies),
                    "p95": sorted(latencies)[max(0, round(0.95 * len(latencies)) - 1)],
                    "max": max(latencies),
                }
            ]
            if latencies
            else []
        ),
    }


def workbook_titles() -> dict[str, str]:
    doc = json.loads(WORKBOOK.read_text())
    return {item["name"]: item["content"]["title"] for item in doc["items"] if item["type"] == 3}


def render(records: list[dict[str, Any]], out: Path) -> None:
    """The panels as one picture, in the workbook's order and with its titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter

    data, titles = panels(records), workbook_titles()
    figure, axes = plt.subplots(4, 2, figsize=(14, 15))
    figure.suptitle("Recording archive — from a local run's telemetry (devtools/dashboard.py)", fontsize=14)
    grid = dict(zip(titles, axes.flat, strict=True))
    for name, ax in grid.items():
        ax.set_title(titles[name], fontsize=10)
    ax = grid["archived-per-hour"]
    rows = data["archived-per-hour"]
    ax.bar([r["hour"].strftime("%H:00") for r in rows], [r["chunks"] for r in rows], color="#2b7bba")
    for i, r in enumerate(rows):
        ax.annotate(f"{r['GiB'] * 1024:.0f} MiB", (i, r["chunks"]), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("chunks")
    ax = grid["time-left-distribution"]
    rows = data["time-left-distribution"]
    closest = min((r["hours_left"] for r in rows), default=0)
    ax.bar(
        [r["hours_left"] for r in rows],
        [r["chunks"] for r in rows],
        width=0.8,
        align="edge",
        color=["#d62728" if r["hours_left"] == closest else "#2b7bba" for r in rows],
    )
    ax.set_xlabel("hours left (1 h bins; the least in red)")
    ax.set_ylabel("chunks")
    ax.set_xlim(0, 25)
    ax = grid["closest-call"]
    ax.axis("off")
    if data["closest-call"]:
        tile = data["closest-call"][0]
        hours = tile["min_hours_left"]
        color = "#d62728" if hours < 2 else "#ff7f0e" if hours < 6 else "#2ca02c"
        ax.text(0.5, 0.55, f"{hours:.2f} h", ha="center", va="center", fontsize=40, color=color)
        ax.text(0.5, 0.2, f"least time left, over {tile['chunks']} archived chunks", ha="center", fontsize=10)
    ax = grid["failures-by-kind"]
    rows = data["failures-by-kind"]
    ax.barh([r["kind"] for r in rows], [r["failures"] for r in rows], color="#ff7f0e")
    ax.set_xlabel("failed attempts")
    _table(grid["lost-chunks"], data["lost-chunks"], ["call_id", "chunk_index", "document_id"])
    ax = grid["poison-depth"]
    rows = data["poison-depth"]
    ax.step([r["time"] for r in rows], [r["depth"] for r in rows], where="post", marker="o", color="#9467bd")
    ax.set_ylabel("messages")
    ax.set_ylim(bottom=0, top=max([r["depth"] for r in rows], default=0) + 1)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
    ax.tick_params(axis="x", labelsize=7)
    _table(
        grid["incomplete-nearest-deadline"],
        data["incomplete-nearest-deadline"],
        ["call_id", "recording_key", "chunks", "hours_to_deadline"],
    )
    ax = grid["event-to-delete"]
    rows = data["event-to-delete"]
    if rows:
        labels = ["p50", "p95", "max"]
        ax.bar(labels, [rows[0][k] / HOUR for k in labels], color="#17becf")
        ax.set_ylabel("hours (a backlog: events up to a day old)")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(out, dpi=80)
    plt.close(figure)


def _short(text: str) -> str:
    return text if len(text) <= 18 else f"{text[:8]}…{text[-8:]}"


def _table(ax: Any, rows: list[dict[str, Any]], columns: list[str]) -> None:
    ax.axis("off")
    if not rows:
        ax.text(0.5, 0.5, "none", ha="center")
        return
    cells = [[f"{r[c]:.1f}" if isinstance(r[c], float) else _short(str(r[c])) for c in columns] for r in rows]
    table = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.4)


# --- the command -------------------------------------------------------------------------------------------------


async def produce(workdir: Path) -> list[dict[str, Any]]:
    """The scenario on its own Azurite and simulator; the records the worker exported."""
    telemetry = workdir / "telemetry.jsonl"
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(telemetry.unlink, missing_ok=True)
    azurite = await asyncio.to_thread(Azurite(location=workdir / f"azurite-{int(time.time())}").start)
    sim = RecordingSimulator()
    await sim.start()
    try:
        return await produce_on(azurite, sim, telemetry)
    finally:
        await sim.stop()
        await asyncio.to_thread(azurite.stop)


async def produce_on(azurite: Azurite, sim: RecordingSimulator, telemetry: Path) -> list[dict[str, Any]]:
    """The scenario through the local host (its worker in a process of its own, as ``python -m devtools.local_host``
    runs it)."""
    key = secrets.token_urlsafe(16)
    ingestion = await LoopbackIngestion(telemetry).start()
    env = {**environment(azurite, sim, telemetry, key), **ingestion.environment()}
    host = LocalFunctionsHost(REPO, env, SubprocessWorker, key)
    await host.start()
    runner, port = await serve_app(host.web_app())
    try:
        url = f"http://127.0.0.1:{port}/api/recording-events"
        await play(Scenario(sim, url, key, telemetry), host.run_timer)
        await asyncio.sleep(1.5)  # the worker's last metric export
    finally:
        await runner.cleanup()
        await host.stop()
        await ingestion.stop()
    return read_records(telemetry)


def main() -> int:
    out = REPO / "docs" / "dashboard.png"
    records = asyncio.run(produce(REPO / ".dashboard"))
    render(records, out)
    print(f"dashboard: {len(records)} records → {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
