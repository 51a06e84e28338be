"""The fixity audit through function_app.py under the local host, on Azurite: the timer finds a flipped byte and a
missing blob (the error log line, the metric, each chunk's last check), and the walk resumes where the last run,
in another process, stopped; by hand, ``recording-archive fixity`` does the same slice work with progress."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sys
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.simulator import SimRecording
from devtools.write_once import Guard
from recording_pipeline.cli import main
from recording_pipeline.core.naming import FIXITY_CURSOR, fixity_name
from tests.support.stack import REPO, LocalHost, Stack, post_events, wait_until
from tests.support.telemetry import Captured
from tests.support.terminal import Tty

MIB = 1024 * 1024
CALL = "f1f1f1f1-0000-0000-0000-000000000000"


async def archive(stack: Stack, local: LocalHost, sizes: list[int]) -> list[SimRecording]:
    sim = stack.simulator
    chunks = [sim.add(f"doc-f{i}", size, call_id=CALL, chunk_index=i) for i, size in enumerate(sizes)]
    status, _ = await post_events(local.url, [sim.event(CALL, "recF", chunks)], stack.env["WEBHOOK_KEY"])
    assert status == 200

    async def deleted() -> bool:
        return all(c.document_id in sim.deleted for c in chunks)

    await wait_until(deleted, timeout=120)
    return chunks


def media(chunk: SimRecording) -> str:
    return f"{CALL}/r-recF/{chunk.chunk_index:05d}-{chunk.document_id}.mp4"


async def read_json(blob_service: BlobServiceClient, stack: Stack, name: str) -> Any:
    blob = blob_service.get_container_client(stack.state_container).get_blob_client(name)
    return json.loads(await (await blob.download_blob()).readall())


async def test_the_timer_finds_a_flipped_byte_and_a_missing_blob(
    stack: Stack, blob_service: BlobServiceClient, telemetry: Captured, write_once: Guard
) -> None:
    local = await stack.local_host(in_process=True)
    try:
        chunks = await archive(stack, local, [MIB + 5, MIB, 2 * MIB])
        container = blob_service.get_container_client(stack.container)
        flipped, gone = media(chunks[0]), media(chunks[2])
        for name in (flipped, gone):
            write_once.allow(stack.container, name)  # the damage this test does on purpose
        blob = container.get_blob_client(flipped)
        props = await blob.get_blob_properties()
        data = bytearray(await (await blob.download_blob()).readall())
        data[MIB // 2] ^= 0x01
        await blob.upload_blob(bytes(data), overwrite=True, metadata=dict(props.metadata))
        await container.get_blob_client(gone).delete_blob()
        assert await local.host.run_timer("fixity_audit")
    finally:
        await local.stop()
    errors = [str(r.log_record.body) for r in telemetry.logs if str(r.log_record.body).startswith("fixity check")]
    assert sorted(errors) == sorted(
        [
            f"fixity check failed: mismatch {flipped}: content sha256 is {_sha(data)}, custody record says "
            f"{chunks[0].sha256}",
            f"fixity check failed: missing {gone}: media blob is missing",
        ]
    )
    failed = [r.log_record for r in telemetry.logs if str(r.log_record.body).startswith("fixity check failed")]
    assert {str(r.severity_text) for r in failed} == {"ERROR"}
    assert {dict(r.attributes or {})["call_id"] for r in failed} == {CALL}
    points = telemetry.metric_points()
    by_result = {dict(p.attributes)["result"]: p.value for p in points["recording.fixity.chunks"]}
    assert by_result == {"ok": 1, "mismatch": 1, "missing": 1}
    assert sum(p.value for p in points["recording.fixity.bytes_verified"]) == 2 * MIB + 5
    [days] = [p.value for p in points["recording.fixity.pass_days"]]  # the whole archive was one pass, in this run
    assert 0 <= days < 1 / 24
    checks = (await read_json(blob_service, stack, fixity_name(CALL, "r-recF")))["chunks"]
    assert {k: v["result"] for k, v in checks.items()} == {
        f"00000-{chunks[0].document_id}": "mismatch",
        f"00001-{chunks[1].document_id}": "ok",
        f"00002-{chunks[2].document_id}": "missing",
    }
    cursor = await read_json(blob_service, stack, FIXITY_CURSOR)
    assert cursor["lastPass"]["failures"] == 2 and cursor["current"]["number"] == 2


def _sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


async def fixity_run(stack: Stack, *args: str) -> dict[str, Any]:
    """``recording-archive fixity run --json ARGS`` in its own process: a run after a restart, by definition."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recording_pipeline",
        "fixity",
        "run",
        "--json",
        *args,
        env={**os.environ, **stack.env},
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0 and err == b"", err
    return dict(json.loads(out))


async def test_the_walk_resumes_where_the_last_run_stopped_by_hand_or_by_the_timer(
    stack: Stack, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = await stack.local_host(in_process=True)
    try:
        chunks = await archive(stack, local, [MIB, MIB + 1, MIB + 2, MIB + 3])
    finally:
        await local.stop()
    first = await fixity_run(stack, "--bytes", "1")  # one chunk: a run takes a chunk while it has any budget left
    second = await fixity_run(stack, "--bytes", "1")
    assert first["chunks"]["ok"] == second["chunks"]["ok"] == 1 and first["stopped"] == "budget"
    assert first["cursor"]["after"] < second["cursor"]["after"]
    assert second["cursor"]["current"] | {"startedAt": None} == {
        "number": 1,
        "startedAt": None,
        "finishedAt": None,
        "chunks": 2,
        "bytes": 2 * MIB + 1,
        "failures": 0,
    }
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    assert await asyncio.to_thread(main, ["fixity", "run", "--bytes", "1MiB"]) == 0  # the third, with progress
    assert tty.getvalue().startswith("\rfixity [") and "1.0 MiB / 1.0 MiB" in tty.getvalue()
    local = await stack.local_host(in_process=True)  # the timer, in yet another host: it finishes the pass
    try:
        assert await local.host.run_timer("fixity_audit")
    finally:
        await local.stop()
    cursor = await read_json(blob_service, stack, FIXITY_CURSOR)
    assert cursor["lastPass"]["chunks"] == 4 and cursor["lastPass"]["bytes"] == 4 * MIB + 6
    checks = (await read_json(blob_service, stack, fixity_name(CALL, "r-recF")))["chunks"]
    assert sorted(checks) == [f"{c.chunk_index:05d}-{c.document_id}" for c in chunks]
    assert {c["passNumber"] for c in checks.values()} == {1} and {c["result"] for c in checks.values()} == {"ok"}
    quiet, out = Tty(), io.StringIO()
    monkeypatch.setattr("sys.stderr", quiet)
    monkeypatch.setattr("sys.stdout", out)
    assert await asyncio.to_thread(main, ["fixity", "status", CALL, "--json"]) == 0
    status = json.loads(out.getvalue())
    assert quiet.getvalue() == "" and status["periodDays"] == pytest.approx((4 * MIB + 6) / 10 / 1024**3)
    assert [sorted(r["chunks"]) for r in status["recordings"]] == [sorted(checks)]
    out.truncate(0)
    out.seek(0)
    assert await asyncio.to_thread(main, ["fixity", "status", f"{CALL}/r-recF"]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("pass 2 since ") and "the last pass took" in lines[0]
    assert "at 10.0 GiB a day a pass takes about 0.0 day(s)" in lines[0]
    assert lines[1].split() == ["RECORDING", "CHUNK", "RESULT", "VERIFIED", "PASS"] and len(lines) == 6
    assert all(line.split()[2] == "ok" and line.split()[-1] == "1" for line in lines[2:])
