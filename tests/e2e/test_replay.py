"""`python -m recording_pipeline replay`: dead-letter blobs, saved deliveries in
either schema, JSON lines, and the poison queue — through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.simulator import to_cloudevent
from recording_pipeline.app.deadletter import REDRIVEN_SUFFIX, SCHEDULED_TRIES
from recording_pipeline.cli import main
from tests.support.stack import Stack

CALL = "abababab-0000-0000-0000-000000000000"


async def test_replay_files_of_every_shape(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    sim = stack.simulator

    def event(n: int, chunks: int) -> dict[str, Any]:
        recs = [sim.add(f"doc-r{n}-{i}", 1024, chunk_index=i) for i in range(chunks)]
        return sim.event(CALL, f"rec{n}", recs, event_id=f"evt-{n}")

    dead_letter = tmp_path / "deadletter.json"  # Event Grid adds its own fields to each dead-lettered event
    dead_letter.write_text(
        json.dumps(
            [
                {
                    **event(1, 2),
                    "deadLetterReason": "MaxDeliveryAttemptsExceeded",
                    "deliveryAttempts": 30,
                    "lastDeliveryOutcome": "TimedOut",
                    "publishTime": "2026-11-22T10:00:00Z",
                }
            ]
        )
    )
    cloud = tmp_path / "cloud.json"
    cloud.write_text(json.dumps([to_cloudevent(event(2, 1))]))
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(json.dumps(e) for e in (event(3, 1), event(4, 3))) + "\n")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**event(5, 1), "subject": "/not/a/recording"}]))
    missing = tmp_path / "missing.json"

    code = await _run(["replay", str(dead_letter), str(cloud), str(lines), str(bad), str(missing)])
    out = capsys.readouterr().out
    assert code == 1  # the missing file
    assert "files: 5  enqueued: 7  ignored: 0  external: 0  rejected: 1  failed: 1" in out
    assert "bad.json" in out and "missing.json: cannot read" in out
    jobs = await stack.queued_jobs()
    assert sorted((j.recording_id, j.chunk_index) for j in jobs) == [
        ("rec1", 0),
        ("rec1", 1),
        ("rec2", 0),
        ("rec3", 0),
        ("rec4", 0),
        ("rec4", 1),
        ("rec4", 2),
    ]

    code = await _run(["replay", str(dead_letter)])
    assert code == 0 and "enqueued: 2" in capsys.readouterr().out


async def test_replay_needs_files_or_poison(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    assert await _run(["replay"]) == 2
    assert "name files, or --poison, or --deadletter" in capsys.readouterr().err
    assert await _run(["replay", "--poison"]) == 0
    assert "re-driven 0 job(s)" in capsys.readouterr().out


async def _run(argv: list[str]) -> int:
    """main() runs its own event loop; keep it off this test's loop."""
    import asyncio

    return await asyncio.to_thread(main, argv)


async def test_replay_is_not_refused_by_delivery_auth(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator's files carry no Event Grid token; Entra-protected delivery must not refuse them."""
    for key, value in {
        **stack.env,
        "WEBHOOK_ENTRA_TENANT_ID": "t",
        "WEBHOOK_ENTRA_AUDIENCE": "a",
        "WEBHOOK_ENTRA_JWKS_URL": "http://127.0.0.1:9/none",
    }.items():
        monkeypatch.setenv(key, value)
    sim = stack.simulator
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(sim.event(CALL, "recAuth", [sim.add("doc-auth", 1024)])))
    assert await _run(["replay", str(saved)]) == 0
    assert "enqueued: 1" in capsys.readouterr().out


async def test_replay_deadletter_redrives_what_waits_in_the_container_once(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the schedule gave up on (its failed tries recorded beside the blob) is redriven by the operator."""
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    sim = stack.simulator
    event = sim.event(CALL, "recDead", [sim.add("doc-dead", 1024)], event_id="evt-dead")
    name = "EVGT/SUB/2026/12/06/10/5e1d.json"
    async with BlobServiceClient.from_connection_string(stack.azurite.connection_string) as service:
        container = service.get_container_client(stack.env["DEADLETTER_CONTAINER"])
        await container.create_container()
        await container.upload_blob(name, json.dumps([{**event, "deadLetterReason": "TimeToLiveExceeded"}]))
        await container.upload_blob(f"{name}.failed-{SCHEDULED_TRIES:02d}.json", b"{}")
        assert await _run(["replay", "--deadletter"]) == 0
        out = capsys.readouterr().out
        assert "redriven: 1  enqueued: 1  refused again: 0  failed: 0  waiting: 0" in out
        assert [j.document_id for j in await stack.queued_jobs()] == ["doc-dead"]
        record = json.loads(
            await (await container.get_blob_client(f"{name}{REDRIVEN_SUFFIX}").download_blob()).readall()
        )
        assert (record["by"], record["try"], record["enqueued"]) == ("replay", SCHEDULED_TRIES + 1, 1)
        assert await _run(["replay", "--deadletter"]) == 0
        assert "redriven: 0  enqueued: 0" in capsys.readouterr().out
        assert len(await stack.queued_jobs()) == 1
        # The container downloaded as files (DEPLOY.md): the blob replays, the records beside it are skipped.
        files = []
        async for blob in container.list_blobs():
            path = tmp_path / blob.name.replace("/", "_")
            path.write_bytes(await (await container.download_blob(blob.name)).readall())
            files.append(str(path))
    assert len(files) == 3
    assert await _run(["replay", *files]) == 0
    out = capsys.readouterr().out
    assert "files: 1  enqueued: 1  ignored: 0  external: 0  rejected: 0  failed: 0" in out
    assert "skipped 2 record(s) of the dead-letter redrive" in out
