"""Many small chunks: what each costs in storage requests, how fast a burst clears, the webhook under load.

    .venv/bin/python -m bench.burst_bench [--recordings 60] [--app-root PATH] [--label NAME]

Everything runs against a real ``serve`` process (the local Functions host running ``function_app.py``, its queue
polling and host.json rules included), the ACS simulator in a process of its own, and a fresh Azurite with its
access log on, so every storage request is counted where it arrives:

- **census**: one recording of one chunk that fits in one block, no faults: every storage request it caused, by
  kind (``devtools/request_census.py``), the Functions host's own queue traffic shown apart.
- **burst**: ``--recordings`` recordings × 3 chunks of 256 KiB–1 MiB; one recording in ten has one transient
  fault (a 503 with Retry-After, a connection reset mid-body, a 500 on DELETE, a 429 on the metadata, in turn).
  All events are POSTed at once, 8 at a time; from the first POST to the last DELETE: chunks per second, and
  each chunk's time from its event's POST to its DELETE (median, p99). Beside it, Azurite's own cost per request
  measured in the same run (small blob creates, 16 at a time): the chunks per second Azurite could serve if it
  did nothing but this app's requests, and how close the burst came to that.
- **ack under load**: six large chunks (the host's ``batchSize`` + ``newBatchThreshold``: all in flight at once)
  transferring while single-event POSTs are timed one after another.

``--app-root`` runs another checkout of the app (for example ``git worktree add /tmp/before <commit>``) with this
bench, for a before-and-after on the same machine in the same hour. Results go to ``.bench/burst-LABEL.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import shutil
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
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
            "AzureWebJobsStorage": self.azurite.connection_string,
            "RECORDING_ALLOWED_HOSTS": "127.0.0.1",
            "RECORDING_ALLOW_HTTP": "true",
            "WEBHOOK_KEY": key,
            **self.names(tag),
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


def _cpu(proc: psutil.Process) -> float:
    """CPU seconds of a process and its children (the host and its language worker)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
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


async def measure_burst(env: Env, session: aiohttp.ClientSession, recordings: int, seed: int) -> dict[str, Any]:
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
        cpu_azurite, cpu_app = _cpu(azurite), _cpu(host)
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
        deleted = await _wait_deleted(session, env, docs, timeout=900)
        last = max(deleted.values())
        cpu_azurite, cpu_app = _cpu(azurite) - cpu_azurite, _cpu(host) - cpu_app
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
        "event_to_delete_s": {
            "median": statistics.median(latencies),
            "p99": statistics.quantiles(latencies, n=100, method="inclusive")[98],
            "max": latencies[-1],
        },
        "app_requests_per_chunk": sum(app.values()) / len(docs),
        "app_requests_by_kind_per_chunk": _counts(app, len(docs)),
        "host_queue_requests": sum(n for k, n in counts.items() if k[1] in HOST_QUEUE_OPS),
        "azurite_cpu_seconds": cpu_azurite,
        "app_cpu_seconds": cpu_app,
    }
    print(
        f"  burst: {len(docs)} chunks of {recordings} recordings ({faulted} with a fault) in {seconds:.2f} s = "
        f"{result['chunks_per_second']:.1f} chunks/s; event→DELETE median "
        f"{result['event_to_delete_s']['median']:.2f} s, p99 {result['event_to_delete_s']['p99']:.2f} s; "
        f"{result['app_requests_per_chunk']:.1f} storage requests per chunk; "
        f"CPU: Azurite {cpu_azurite:.1f} s, app {cpu_app:.1f} s",
        flush=True,
    )
    return result


# --- ack under load --------------------------------------------------------------------------------------------


async def measure_ack_under_load(
    env: Env, session: aiohttp.ClientSession, big_mib: int, acks: int, transfers: int = 6
) -> dict[str, Any]:
    tag = f"ack{uuid.uuid4().hex[:6]}"
    sim = env.sim()
    big_call = f"load-{tag}"
    big = [f"{big_call}-{i}" for i in range(transfers)]
    small = [(f"ack-{tag}-{i}", f"ack-{tag}-{i}-0") for i in range(acks + 10)]
    await _register(
        session,
        env,
        [{"doc": d, "size": big_mib * MIB, "call": big_call, "index": i} for i, d in enumerate(big)]
        + [{"doc": doc, "size": 256 * KIB, "call": call} for call, doc in small],
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
        latencies: list[float] = []
        for i, (call, doc) in enumerate(small):
            event = sim.event(call, f"r{i}{tag}", [sim.add(doc, 256 * KIB, "mp4", chunk_index=0, call_id=call)])
            t0 = time.perf_counter()
            await _post(session, serve.url, key, [event])
            if i >= 10:
                latencies.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.02)
        measured_until = time.time()
        deleted = await _deleted(session, env)
    done_early = [d for d in big if d in deleted and deleted[d] < measured_until]
    result = {
        "transfers": transfers,
        "transfer_mib": big_mib,
        "acks": len(latencies),
        "median_ms": statistics.median(latencies),
        "p99_ms": statistics.quantiles(latencies, n=100, method="inclusive")[98],
        "max_ms": max(latencies),
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    logs = OUT_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sim_proc, info = start_simulator(logs)
    results: dict[str, Any] = {
        "label": args.label,
        "app_root": str(args.app_root),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            for name in ("census", "burst", "ack"):
                if name in args.skip:
                    continue
                location = OUT_DIR / f"azurite-{name}-{uuid.uuid4().hex[:6]}"
                azurite = Azurite(location=location, access_log=True).start()
                env = Env(info["base_url"], info["connection_string"], azurite, args.app_root, logs)
                try:
                    if name == "census":
                        results["census"] = await measure_census(env, session)
                    elif name == "burst":
                        results["azurite"] = await measure_azurite(env)
                        results["burst"] = burst = await measure_burst(env, session, args.recordings, args.seed)
                        limit = results["azurite"]["requests_per_second"] / burst["app_requests_per_chunk"]
                        burst["azurite_limit_chunks_per_second"] = limit
                        burst["share_of_azurite_limit"] = burst["chunks_per_second"] / limit
                        print(
                            f"  Azurite could serve {limit:.1f} chunks/s of these requests; the burst ran at "
                            f"{burst['share_of_azurite_limit']:.2f} of that",
                            flush=True,
                        )
                    else:
                        results["ack"] = await measure_ack_under_load(env, session, args.big_mib, args.acks)
                finally:
                    azurite.stop(grace=1)
                    shutil.rmtree(location, ignore_errors=True)
    finally:
        stop_simulator(sim_proc)
    out = OUT_DIR / f"burst-{args.label}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=60, help="recordings in the burst (3 chunks each)")
    parser.add_argument("--seed", type=int, default=42, help="chunk sizes")
    parser.add_argument("--app-root", type=Path, default=REPO, help="the checkout of the app to run")
    parser.add_argument("--label", default="latest")
    parser.add_argument("--big-mib", type=int, default=512, help="size of each of the six chunks under load")
    parser.add_argument("--acks", type=int, default=200, help="single-event POSTs timed under load")
    parser.add_argument("--skip", default="", help="comma-separated: census, burst, ack")
    args = parser.parse_args()
    args.app_root = args.app_root.resolve()
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
