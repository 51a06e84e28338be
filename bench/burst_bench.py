"""Many small chunks: what each costs in storage requests, how fast a burst clears, the webhook under load.

    .venv/bin/python -m bench.burst_bench [--recordings 60] [--app-root PATH] [--label NAME]

Everything runs against a real local host process (``python -m devtools.local_host``, running
``function_app.py``, its queue polling and host.json rules included), the ACS simulator in a process of its own,
and a fresh Azurite with its access log on, so every storage request is counted where it arrives:

- **census**: one recording of one chunk that fits in one block, no faults: every storage request it caused, by
  kind (``devtools/request_census.py``), the Functions host's own queue traffic shown apart.
- **burst**: ``--recordings`` recordings × 3 chunks of 256 KiB–1 MiB; one recording in ten has one transient
  fault (a 503 with Retry-After, a connection reset mid-body, a 500 on DELETE, a 429 on the metadata, in turn).
  All events are POSTed at once, 8 at a time; from the first POST to the last DELETE: chunks per second, and
  each chunk's time from its event's POST to its DELETE (median, p99). Beside it, Azurite's own cost per request
  measured in the same run (CPU per small blob create, 16 at a time): the chunks per second that would keep
  Azurite (one Node process, one core) busy all the time with this app's requests alone, and how close the burst
  came to that.
- **ack under load**: six large chunks transferring while single-event POSTs are timed one after another. Here
  the host's queue lives in an Azurite of its own, as in Azure (the Function App's storage account is not the
  archive account): otherwise every enqueue waits behind block writes in one single-threaded emulator.

``--baseline PATH`` measures another checkout of the app (for example ``git worktree add /tmp/before <commit>``)
alike, interleaved with this one run by run (``--repeat``), for a before-and-after in one run on the same machine;
the medians and the burst's speed-up are printed. ``--env NAME=VALUE`` sets an app setting for both. Results go
to ``.bench/burst-LABEL.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]

from bench.transfer_bench import OUT_DIR, start_simulator, stop_simulator
from devtools.devstack import REPO, Azurite, ServeProcess
from devtools.request_census import HOST_QUEUE_OPS, app_requests, census, read_log
from devtools.simulator import RecordingSimulator

KIB, MIB = 1024, 1024 * 1024
FAULTS = (
    {"method": "GET", "kind": "media", "status": 503, "retry_after": 1},
    {"method": "GET", "kind": "media", "action": "reset", "body_bytes": 64 * KIB},
    {"method": "DELETE", "kind": "delete", "status": 500},
    {"method": "GET", "kind": "metadata", "status": 429, "retry_after": 1},
)


@dataclass
class Env:
    """The simulator (shared) and one Azurite; each measurement gets its own containers and queue."""

    sim_url: str
    acs_connection_string: str
    azurite: Azurite
    app_root: Path
    logs: Path
    extra_env: dict[str, str]
    queue_azurite: Azurite | None = None  # the Functions host's own storage, when it is not the archive's

    def names(self, tag: str) -> dict[str, str]:
        return {
            "ARCHIVE_CONTAINER": f"arch-{tag}",
            "ARCHIVE_STATE_CONTAINER": f"state-{tag}",
            "CHUNK_QUEUE_NAME": f"q-{tag}",
        }

    def role_of(self, tag: str) -> Any:
        roles = {f"arch-{tag}": "archive", f"state-{tag}": "state", f"q-{tag}": "queue", f"q-{tag}-poison": "poison"}
        return roles.get

    @contextlib.contextmanager
    def serve(self, tag: str) -> Iterator[tuple[ServeProcess, str]]:
        key = secrets.token_urlsafe(16)
        env = {
            "ACS_CONNECTION_STRING": self.acs_connection_string,
            "ARCHIVE_STORAGE_CONNECTION_STRING": self.azurite.connection_string,
            "AzureWebJobsStorage": (self.queue_azurite or self.azurite).connection_string,
            "RECORDING_ALLOWED_HOSTS": "127.0.0.1",
            "RECORDING_ALLOW_HTTP": "true",
            "WEBHOOK_KEY": key,
            **self.names(tag),
            **self.extra_env,
        }
        serve = ServeProcess(env, self.logs / f"serve-{tag}.log", self.app_root).start()
        try:
            yield serve, key
        finally:
            serve.kill()

    def sim(self) -> RecordingSimulator:
        """A copy of the simulator that only builds events pointing at the real one."""
        sim = RecordingSimulator(endpoint_host=self.sim_url.split("://", 1)[1])
        sim.base_url = self.sim_url
        return sim


async def _register(session: aiohttp.ClientSession, env: Env, specs: list[dict[str, Any]]) -> None:
    async with session.post(f"{env.sim_url}/_bench/recordings", json=specs) as response:
        response.raise_for_status()


async def _deleted(session: aiohttp.ClientSession, env: Env) -> dict[str, float]:
    async with session.get(f"{env.sim_url}/_bench/deleted") as response:
        found: dict[str, float] = await response.json()
        return found


async def _wait_deleted(session: aiohttp.ClientSession, env: Env, docs: list[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        deleted = await _deleted(session, env)
        if all(d in deleted for d in docs):
            return {d: deleted[d] for d in docs}
        if time.monotonic() > deadline:
            missing = [d for d in docs if d not in deleted]
            raise RuntimeError(f"{len(missing)} of {len(docs)} chunks not deleted after {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def _wait_queue_empty(env: Env, queue: str, timeout: float = 120) -> None:
    """Every message completed (deleted by the host), so every attempt, and its last state write, is over."""
    from azure.storage.queue.aio import QueueClient

    deadline = time.monotonic() + timeout
    async with QueueClient.from_connection_string(env.azurite.connection_string, queue) as client:
        while (await client.get_queue_properties()).approximate_message_count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"queue {queue} not empty after {timeout:.0f} s")
            await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # Azurite writes its access log line just after it answers


async def _post(session: aiohttp.ClientSession, url: str, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    headers = {"x-functions-key": key, "Content-Type": "application/json"}
    async with session.post(url, data=json.dumps(events), headers=headers) as response:
        answer: dict[str, Any] = await response.json()
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}: {answer}")
        return answer


def _counts(rows: Counter[tuple[str, str]], per: int) -> dict[str, float]:
    return {f"{role}: {op}": round(n / per, 2) for (role, op), n in sorted(rows.items())}


def _cpu(proc: psutil.Process, children: bool = True) -> float:
    """CPU seconds of a process, and of its children (the host's language worker) unless ``children`` is False."""
    total = 0.0
    for p in [proc, *(proc.children(recursive=True) if children else [])]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


# --- census ---------------------------------------------------------------------------------------------------


async def measure_census(env: Env, session: aiohttp.ClientSession) -> dict[str, Any]:
    tag = f"census{uuid.uuid4().hex[:6]}"
    sim = env.sim()
    call, doc = f"census-{tag}", f"census-{tag}-0"
    await _register(session, env, [{"doc": doc, "size": MIB, "call": call}])
    recording = sim.add(doc, MIB, "mp4", chunk_index=0, call_id=call)
    assert env.azurite.log_path is not None
    with env.serve(tag) as (serve, key):
        _, start = read_log(env.azurite.log_path)
        await _post(session, serve.url, key, [sim.event(call, f"rec{tag}", [recording])])
        await _wait_deleted(session, env, [doc], timeout=60)
        await _wait_queue_empty(env, env.names(tag)["CHUNK_QUEUE_NAME"])
        requests, _ = read_log(env.azurite.log_path, start)
    counts = census(requests, env.role_of(tag))
    app = app_requests(counts)
    host = Counter({k: n for k, n in counts.items() if k[1] in HOST_QUEUE_OPS})
    by_kind = _counts(app, 1)
    result: dict[str, Any] = {"app_total": sum(app.values()), "app": by_kind, "host": _counts(host, 1)}
    print(f"  census, one 1 MiB chunk: {result['app_total']} storage requests by the app", flush=True)
    for kind, n in by_kind.items():
        print(f"    {n:5.0f}  {kind}")
    return result


# --- Azurite's own cost per request ----------------------------------------------------------------------------


async def measure_azurite(env: Env, requests: int = 1000, concurrency: int = 16) -> dict[str, Any]:
    from azure.storage.blob.aio import BlobServiceClient

    assert env.azurite.process is not None
    azurite = psutil.Process(env.azurite.process.pid)
    async with BlobServiceClient.from_connection_string(env.azurite.connection_string) as service:
        container = service.get_container_client(f"raw-{uuid.uuid4().hex[:8]}")
        await container.create_container()
        slots = asyncio.Semaphore(concurrency)
        body = b"x" * KIB

        async def create(i: int) -> None:
            async with slots:
                await container.get_blob_client(f"b/{i:06d}.json").upload_blob(body, overwrite=False)

        await asyncio.gather(*(create(i) for i in range(50)))  # warm-up
        cpu0, t0 = _cpu(azurite), time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(50, 50 + requests)))
        seconds, cpu = time.perf_counter() - t0, _cpu(azurite) - cpu0
    result = {
        "requests": requests,
        "seconds": seconds,
        "requests_per_second": requests / seconds,
        "azurite_cpu_ms_per_request": cpu * 1000 / requests,
    }
    print(
        f"  Azurite alone: {result['requests_per_second']:.0f} small blob creates/s, "
        f"{result['azurite_cpu_ms_per_request']:.2f} ms of its CPU each",
        flush=True,
    )
    return result


# --- burst ------------------------------------------------------------------------------------------------------


async def measure_burst(
    env: Env, session: aiohttp.ClientSession, recordings: int, seed: int, simulator: psutil.Process
) -> dict[str, Any]:
    tag = f"burst{uuid.uuid4().hex[:6]}"
    rng = random.Random(seed)
    sim = env.sim()
    specs: list[dict[str, Any]] = []
    events: list[tuple[dict[str, Any], list[str]]] = []
    faulted = 0
    for r in range(recordings):
        call = f"burst-{tag}-{r}"
        chunks = []
        for index in range(3):
            doc, size = f"{call}-{index}", rng.randint(256 * KIB, MIB)
            spec: dict[str, Any] = {"doc": doc, "size": size, "call": call, "index": index}
            if r % 10 == 0 and index == 1:
                spec["faults"] = [FAULTS[faulted % len(FAULTS)]]
                faulted += 1
            specs.append(spec)
            chunks.append(sim.add(doc, size, "mp4", chunk_index=index, call_id=call))
        events.append((sim.event(call, f"rec{r}{tag}", chunks), [c.document_id for c in chunks]))
    await _register(session, env, specs)
    docs = [d for _, ds in events for d in ds]
    assert env.azurite.log_path is not None and env.azurite.process is not None
    azurite = psutil.Process(env.azurite.process.pid)
    with env.serve(tag) as (serve, key):
        assert serve.process is not None
        host = psutil.Process(serve.process.pid)
        await asyncio.sleep(2)  # the worker process imports the app
        _, start = read_log(env.azurite.log_path)
        cpu_azurite, cpu_app, cpu_host, cpu_sim = _cpu(azurite), _cpu(host), _cpu(host, False), _cpu(simulator)
        posted: dict[str, float] = {}
        slots = asyncio.Semaphore(8)

        async def deliver(event: dict[str, Any], chunk_docs: list[str]) -> None:
            async with slots:
                sent = time.time()
                answer = await _post(session, serve.url, key, [event])
                if answer.get("enqueued") != 3:
                    raise RuntimeError(f"burst event: {answer}")
                for d in chunk_docs:
                    posted[d] = sent

        first = time.time()
        await asyncio.gather(*(deliver(e, ds) for e, ds in events))
        all_posted = time.time()
        deleted = await _wait_deleted(session, env, docs, timeout=900)
        last = max(deleted.values())
        cpu_azurite, cpu_app = _cpu(azurite) - cpu_azurite, _cpu(host) - cpu_app
        cpu_host, cpu_sim = _cpu(host, False) - cpu_host, _cpu(simulator) - cpu_sim
        await _wait_queue_empty(env, env.names(tag)["CHUNK_QUEUE_NAME"])
        requests, _ = read_log(env.azurite.log_path, start)
    latencies = sorted(deleted[d] - posted[d] for d in docs)
    counts = census(requests, env.role_of(tag))
    app = app_requests(counts)
    seconds = last - first
    result: dict[str, Any] = {
        "recordings": recordings,
        "chunks": len(docs),
        "faulted_recordings": faulted,
        "seconds": seconds,
        "chunks_per_second": len(docs) / seconds,
        "all_events_acknowledged_after_s": all_posted - first,
        "first_delete_after_s": min(deleted.values()) - first,
        "event_to_delete_s": {
            "median": statistics.median(latencies),
            "p99": statistics.quantiles(latencies, n=100, method="inclusive")[98],
            "max": latencies[-1],
        },
        "app_requests_per_chunk": sum(app.values()) / len(docs),
        "app_requests_by_kind_per_chunk": _counts(app, len(docs)),
        "host_queue_requests": sum(n for k, n in counts.items() if k[1] in HOST_QUEUE_OPS),
        "azurite_cpu_seconds": cpu_azurite,
        "app_cpu_seconds": cpu_app,  # the local host and the language worker
        "local_host_cpu_seconds": cpu_host,  # its polling and dispatch (the Functions host's job in Azure)
        "simulator_cpu_seconds": cpu_sim,
    }
    print(
        f"  burst: {len(docs)} chunks of {recordings} recordings ({faulted} with a fault) in {seconds:.2f} s = "
        f"{result['chunks_per_second']:.1f} chunks/s (all events acknowledged after "
        f"{result['all_events_acknowledged_after_s']:.2f} s, "
        f"first DELETE after {result['first_delete_after_s']:.2f} s); "
        f"event→DELETE median "
        f"{result['event_to_delete_s']['median']:.2f} s, p99 {result['event_to_delete_s']['p99']:.2f} s; "
        f"{result['app_requests_per_chunk']:.1f} storage requests per chunk; "
        f"CPU: Azurite {cpu_azurite:.1f} s, worker {cpu_app - cpu_host:.1f} s, local host {cpu_host:.1f} s, "
        f"simulator {cpu_sim:.1f} s",
        flush=True,
    )
    return result


# --- ack under load --------------------------------------------------------------------------------------------


async def _time_acks(
    session: aiohttp.ClientSession, serve: ServeProcess, key: str, sim: RecordingSimulator, tag: str, acks: int
) -> list[float]:
    """Single-event POSTs one after another (the first ten warm up, not counted): milliseconds to each 200."""
    latencies: list[float] = []
    for i in range(acks + 10):
        call, doc = f"ack-{tag}-{i}", f"ack-{tag}-{i}-0"
        event = sim.event(call, f"r{i}{tag}", [sim.add(doc, 256 * KIB, "mp4", chunk_index=0, call_id=call)])
        t0 = time.perf_counter()
        await _post(session, serve.url, key, [event])
        if i >= 10:
            latencies.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.02)
    return latencies


def _ack_stats(latencies: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(latencies),
        "p99_ms": statistics.quantiles(latencies, n=100, method="inclusive")[98],
        "max_ms": max(latencies),
    }


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("w") as log:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)


async def measure_ack_beside_raw_sink(
    env: Env, session: aiohttp.ClientSession, big_mib: int, acks: int, transfers: int = 6
) -> dict[str, Any]:
    """The control: the same webhook timed while the raw sink (staged blocks with MD5, in a process of its own)
    writes the same six files into the same Azurite. What the acknowledgements lose here is the machine's, not
    the worker's."""
    tag = f"raw{uuid.uuid4().hex[:6]}"
    sim = env.sim()
    await _register(session, env, [{"doc": f"ack-{tag}-{i}-0", "size": 256 * KIB} for i in range(acks + 10)])
    docs = [f"rawload-{tag}-{i}" for i in range(transfers)]
    child_env = {
        **os.environ,
        "BENCH_SIM_URL": env.sim_url,
        "BENCH_ACS_CONNECTION_STRING": env.acs_connection_string,
        "BENCH_AZURITE": env.azurite.connection_string,
        "BENCH_CONTAINER": f"rawload-{tag}",
        "BENCH_QUEUE": "unused",
    }
    with env.serve(tag) as (serve, key):
        await asyncio.sleep(2)
        cmd = [sys.executable, "-m", "bench.transfer_bench", "--child", "sink", "--size", str(big_mib * MIB)]
        cmd += ["--docs", ",".join(docs), "--block-size", str(4 * MIB), "--transfer-concurrency", "4"]
        load = _spawn(cmd, child_env, env.logs / f"rawload-{tag}.log")
        try:
            await asyncio.sleep(3)
            latencies = await _time_acks(session, serve, key, sim, tag, acks)
            still_running = load.poll() is None
        finally:
            load.kill()
            load.wait()
    result = {"transfers": transfers, "transfer_mib": big_mib, "acks": len(latencies), **_ack_stats(latencies)}
    result["load_ran_throughout"] = still_running
    print(
        f"  control, ack beside the raw sink ({transfers} × {big_mib} MiB): median {result['median_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms (load throughout: {still_running})",
        flush=True,
    )
    return result


async def measure_ack_under_load(
    env: Env, session: aiohttp.ClientSession, big_mib: int, acks: int, transfers: int = 6
) -> dict[str, Any]:
    tag = f"ack{uuid.uuid4().hex[:6]}"
    sim = env.sim()
    big_call = f"load-{tag}"
    big = [f"{big_call}-{i}" for i in range(transfers)]
    await _register(
        session,
        env,
        [{"doc": d, "size": big_mib * MIB, "call": big_call, "index": i} for i, d in enumerate(big)]
        + [{"doc": f"ack-{tag}-{i}-0", "size": 256 * KIB, "call": f"ack-{tag}-{i}"} for i in range(acks + 10)],
    )
    big_event = sim.event(
        big_call,
        f"rec{tag}",
        [sim.add(d, big_mib * MIB, "mp4", chunk_index=i, call_id=big_call) for i, d in enumerate(big)],
    )
    with env.serve(tag) as (serve, key):
        await asyncio.sleep(2)
        await _post(session, serve.url, key, [big_event])
        await asyncio.sleep(3)  # the host takes all six and their downloads start
        latencies = await _time_acks(session, serve, key, sim, tag, acks)
        measured_until = time.time()
        deleted = await _deleted(session, env)
    done_early = [d for d in big if d in deleted and deleted[d] < measured_until]
    result = {
        "transfers": transfers,
        "transfer_mib": big_mib,
        "acks": len(latencies),
        **_ack_stats(latencies),
        "transfers_finished_during_measurement": len(done_early),
    }
    print(
        f"  ack under load ({transfers} × {big_mib} MiB transferring): median {result['median_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms over {len(latencies)} POSTs "
        f"({len(done_early)} of the transfers finished before the last POST)",
        flush=True,
    )
    return result


# --- the run ---------------------------------------------------------------------------------------------------


def _with_limit(azurite_cost: dict[str, Any], burst: dict[str, Any]) -> None:
    """Azurite is one Node process: one core. At its own cost per request, this many chunks per second would keep
    it busy all the time, doing nothing but this app's requests."""
    per_request = azurite_cost["azurite_cpu_ms_per_request"] / 1000
    limit = 1 / per_request / burst["app_requests_per_chunk"]
    burst["azurite_cpu_ms_per_request"] = per_request * 1000
    burst["azurite_limit_chunks_per_second"] = limit
    burst["share_of_azurite_limit"] = burst["chunks_per_second"] / limit
    burst["azurite_busy_share"] = burst["azurite_cpu_seconds"] / burst["seconds"]
    print(
        f"  at {per_request * 1000:.2f} ms of Azurite CPU per request, Azurite alone could serve {limit:.1f} "
        f"chunks/s; the burst ran at {burst['share_of_azurite_limit']:.2f} of that (Azurite busy "
        f"{burst['azurite_busy_share']:.0%} of the burst)",
        flush=True,
    )


@contextlib.asynccontextmanager
async def _fresh(
    info: dict[str, Any], app_root: Path, logs: Path, extra: dict[str, str], split_queue: bool = False
) -> AsyncIterator[Env]:
    """A fresh Azurite (and, with ``split_queue``, another for the host's queue, as deployed: the Function App's
    storage account is not the archive's)."""
    started: list[tuple[Azurite, Path]] = []
    try:
        for _ in range(2 if split_queue else 1):
            location = OUT_DIR / f"azurite-{uuid.uuid4().hex[:8]}"
            started.append((Azurite(location=location, access_log=True).start(), location))
        queue = started[1][0] if split_queue else None
        yield Env(info["base_url"], info["connection_string"], started[0][0], app_root, logs, extra, queue)
    finally:
        for azurite, location in started:
            azurite.stop(grace=1)
            shutil.rmtree(location, ignore_errors=True)


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key`` (an odd count gives the middle one; even, the lower middle)."""
    ordered = sorted(runs, key=lambda r: float(r[key]))
    return ordered[(len(ordered) - 1) // 2]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    logs = OUT_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sim_proc, info = start_simulator(logs)
    simulator = psutil.Process(sim_proc.pid)
    extra = dict(item.split("=", 1) for item in args.env)
    roots = {"before": args.baseline, args.label: args.app_root} if args.baseline else {args.label: args.app_root}
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "roots": {label: str(root) for label, root in roots.items()},
        "settings": extra,
        "runs": {label: {"burst": [], "ack": []} for label in roots},
    }
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            for label, root in roots.items():
                if "census" not in args.skip:
                    print(f"[{label}] census", flush=True)
                    async with _fresh(info, root, logs, extra) as env:
                        results["runs"][label]["census"] = await measure_census(env, session)
            # Interleaved, so that whatever else the machine does falls on both alike.
            for attempt in range(args.repeat):
                for label, root in roots.items():
                    if "burst" not in args.skip:
                        print(f"[{label}] burst, run {attempt + 1} of {args.repeat}", flush=True)
                        async with _fresh(info, root, logs, extra) as env:
                            cost = await measure_azurite(env)
                            burst = await measure_burst(env, session, args.recordings, args.seed, simulator)
                            _with_limit(cost, burst)
                            results["runs"][label]["burst"].append(burst)
                    if "ack" not in args.skip:
                        print(f"[{label}] ack under load, run {attempt + 1} of {args.repeat}", flush=True)
                        async with _fresh(info, root, logs, extra, split_queue=True) as env:
                            ack = await measure_ack_under_load(env, session, args.big_mib, args.acks)
                            results["runs"][label]["ack"].append(ack)
                        if "control" not in args.skip and label == args.label:
                            async with _fresh(info, root, logs, extra, split_queue=True) as env:
                                control = await measure_ack_beside_raw_sink(env, session, args.big_mib, args.acks)
                                results["runs"][label].setdefault("control", []).append(control)
    finally:
        stop_simulator(sim_proc)
    summary: dict[str, Any] = {}
    for label, runs in results["runs"].items():
        summary[label] = {
            "census": runs.get("census", {}).get("app_total"),
            "burst": _median_run(runs["burst"], "seconds") if runs["burst"] else None,
            "ack": _median_run(runs["ack"], "p99_ms") if runs["ack"] else None,
        }
    results["median"] = summary
    print("\nmedian of the runs:")
    for label, row in summary.items():
        burst, ack = row["burst"], row["ack"]
        parts = [f"  {label:>8}: census {row['census']} requests"]
        if burst:
            parts.append(
                f"burst {burst['seconds']:.2f} s ({burst['chunks_per_second']:.1f} chunks/s, event→DELETE median "
                f"{burst['event_to_delete_s']['median']:.2f} s, p99 {burst['event_to_delete_s']['p99']:.2f} s)"
            )
        if ack:
            parts.append(f"ack p99 {ack['p99_ms']:.0f} ms")
        print("; ".join(parts))
    if args.baseline and summary["before"]["burst"] and summary[args.label]["burst"]:
        speedup = summary["before"]["burst"]["seconds"] / summary[args.label]["burst"]["seconds"]
        results["burst_speedup"] = speedup
        print(f"  burst: {speedup:.2f} × faster than before")
    out = OUT_DIR / f"burst-{args.label}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=60, help="recordings in the burst (3 chunks each)")
    parser.add_argument("--seed", type=int, default=42, help="chunk sizes")
    parser.add_argument("--app-root", type=Path, default=REPO, help="the checkout of the app to run")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout to measure alike, interleaved (labelled 'before')"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of the burst and the ack measurement, each")
    parser.add_argument("--label", default="latest")
    parser.add_argument("--big-mib", type=int, default=512, help="size of each of the six chunks under load")
    parser.add_argument("--acks", type=int, default=200, help="single-event POSTs timed under load")
    parser.add_argument("--skip", default="", help="comma-separated: census, burst, ack, control")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an app setting for serve, e.g. AzureFunctionsJobHost__extensions__queues__batchSize=16",
    )
    args = parser.parse_args()
    args.app_root = args.app_root.resolve()
    args.baseline = args.baseline.resolve() if args.baseline else None
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
