"""The operator commands (status, verify, participant) against an archive the real pipeline wrote:
webhook handler → planned jobs → attempt.archive_chunk on real Azurite, the simulator playing ACS."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from devtools.simulator import SimRecording
from devtools.write_once import Guard
from recording_pipeline.app.attempt import archive_chunk
from recording_pipeline.app.webhook import WebhookRequest, handle_delivery
from recording_pipeline.app.worker import handle_chunk_message
from recording_pipeline.cli import main
from recording_pipeline.cli import output as cli_output
from recording_pipeline.cli.status import STATE_FILTERS
from recording_pipeline.core.jobs import RecordingChunk, encode_job
from recording_pipeline.core.naming import (
    ACCESS_INDEX_PREFIX,
    ACCESS_PREFIX,
    CASES_PREFIX,
    DAYS_PREFIX,
    HOLDS_PREFIX,
    day_prefix,
    participant_prefix,
)
from recording_pipeline.edges.archive import BlobArchive
from tests.support.stack import Stack
from tests.support.terminal import Tty

MIB = 1024 * 1024
CALL_A = "aaaaaaaa-0000-0000-0000-00000000000a"  # complete: 2 of 2 chunks
CALL_B = "bbbbbbbb-0000-0000-0000-00000000000b"  # incomplete: chunk 1 of 0..2 never delivered
CALL_C = "cccccccc-0000-0000-0000-00000000000c"  # lost: chunk 1 gone from ACS before it was archived
CALL_D = "dddddddd-0000-0000-0000-00000000000d"  # its only chunk failed for good (poison queue)
CALL_E = "eeeeeeee-0000-0000-0000-00000000000e"  # bring-your-own-storage: external
ALICE, BOB, CAROL, DAVE = "8:acs:alice-0001", "8:acs:bob-0002", "4:+14255550199", "8:acs:dave-0004"


class _Jobs:
    """A JobSink that keeps the planned jobs, so the test archives them itself, in order."""

    def __init__(self) -> None:
        self.jobs: list[RecordingChunk] = []

    async def enqueue(self, jobs: list[RecordingChunk]) -> int:
        self.jobs.extend(jobs)
        return len(jobs)


@dataclass
class Seeded:
    stack: Stack
    container: ContainerClient  # the archive
    state: ContainerClient  # the state container beside it
    chunks: dict[str, list[SimRecording]]
    started: dict[str, datetime]
    write_once: Guard

    def media(self, call: str, index: int) -> str:
        chunk = self.chunks[call][index]
        return f"{call}/r-rec{call[0].upper()}/{index:05d}-{chunk.document_id}.mp4"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() installs its JSON log handler on the root logger; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def seeded(
    stack: Stack, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch, write_once: Guard
) -> AsyncIterator[Seeded]:
    sim = stack.simulator
    now = datetime.now(UTC)
    started = {call: now - timedelta(days=days) for call, days in ((CALL_A, 4), (CALL_B, 3), (CALL_C, 2), (CALL_D, 1))}

    def add(call: str, index: int, size: int, participants: list[str]) -> SimRecording:
        return sim.add(
            f"doc-{call[0]}-{index}", size, "mp4", chunk_index=index, call_id=call, participants=participants
        )

    chunks = {
        CALL_A: [add(CALL_A, 0, MIB + 3, [ALICE, BOB]), add(CALL_A, 1, 2 * MIB, [ALICE])],
        CALL_B: [
            add(CALL_B, 0, MIB, [BOB, CAROL]),
            add(CALL_B, 1, MIB, [CAROL, DAVE]),
            add(CALL_B, 2, MIB // 2, [BOB]),
        ],
        CALL_C: [add(CALL_C, 0, MIB, [ALICE]), add(CALL_C, 1, MIB, [DAVE])],
        CALL_D: [add(CALL_D, 0, MIB, [BOB, DAVE])],
        CALL_E: [add(CALL_E, 0, MIB, [ALICE])],
    }

    def event(call: str, delivered: list[SimRecording], final: int) -> dict[str, Any]:
        doc = sim.event(call, f"rec{call[0].upper()}", delivered, final_index=final)
        if call in started:
            # Start times days apart, for ordering and --since; without a duration the deadline counts from the
            # event's time (else it would count from the recording's end, days ago).
            doc["data"]["recordingStartTime"] = started[call].isoformat()
            del doc["data"]["recordingDurationMs"]
        return doc

    byos = event(CALL_E, chunks[CALL_E], 0)
    byos["data"]["storageType"] = "blobstorage"
    events = [
        event(CALL_A, chunks[CALL_A], 1),
        event(CALL_B, [chunks[CALL_B][0], chunks[CALL_B][2]], 2),
        event(CALL_C, chunks[CALL_C], 1),
        event(CALL_D, chunks[CALL_D], 0),
        byos,
    ]
    runtime = await stack.runtime()
    try:
        sink = _Jobs()
        response = await handle_delivery(
            WebhookRequest("POST", {}, json.dumps(events).encode()), runtime.webhook, sink, runtime.audit
        )
        assert response.status == 200 and response.body is not None, response.body
        assert response.body["enqueued"] == 7 and response.body["external"] == 1
        del sim.recordings[chunks[CALL_C][1].document_id]  # expired at ACS before we got to it
        for job in sink.jobs:
            if job.call_id != CALL_D:
                await archive_chunk(job, runtime.worker)
        [job_d] = [j for j in sink.jobs if j.call_id == CALL_D]
        # A permanent failure (ACS serves metadata of another chunk): quarantined at once, the chunk "failed".
        sim.recordings[job_d.document_id].metadata_override = json.dumps({"chunkDocumentId": "another-chunk"}).encode()
        assert await handle_chunk_message(encode_job(job_d), 1, runtime.worker) is None
    finally:
        await runtime.close()
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    archive = blob_service.get_container_client(stack.container)
    yield Seeded(stack, archive, blob_service.get_container_client(stack.state_container), chunks, started, write_once)


async def run_cli(*args: str) -> int:
    """The CLI in this process (its own event loop, in a thread); stdout/stderr go to capsys."""

    def run() -> int:
        try:
            return main(list(args))
        except SystemExit as exc:  # argparse refusing an argument
            return int(exc.code or 0)

    return await asyncio.to_thread(run)


def spy_on_lookups(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[str, str]], list[str]]:
    """Every listing the edges make, as (container, prefix), and every JSON document they read, in order."""
    listed: list[tuple[str, str]] = []
    read: list[str] = []
    real_list, real_read = BlobArchive.list_names, BlobArchive.read_json

    def list_names(self: BlobArchive, prefix: str) -> AsyncIterator[str]:
        listed.append((self.container_name, prefix))
        return real_list(self, prefix)

    async def read_json(self: BlobArchive, name: str) -> tuple[Any, str] | None:
        read.append(name)
        return await real_read(self, name)

    monkeypatch.setattr(BlobArchive, "list_names", list_names)
    monkeypatch.setattr(BlobArchive, "read_json", read_json)
    return listed, read


def table(text: str) -> tuple[str, list[list[str]]]:
    """(header line, rows split into cells on runs of 2+ spaces)."""
    lines = text.rstrip("\n").splitlines()
    return lines[0], [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


# --- status ----------------------------------------------------------------


async def test_status_table_shows_every_recording_aligned(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_cli("status") == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "1 job(s) wait in" in captured.err and "-poison: recording-archive replay --poison" in captured.err
    header, rows = table(out)
    assert re.split(r"\s{2,}", header) == list(cli_output.STATUS_HEADERS)
    started = {call: seeded.started[call].strftime("%Y-%m-%d %H:%M:%SZ") for call in seeded.started}
    assert [r[:5] for r in rows] == [
        [CALL_A, "r-recA", "complete", "2/2", "3.0 MiB"],
        [CALL_B, "r-recB", "incomplete", "2/3", "1.5 MiB"],
        [CALL_C, "r-recC", "lost", "1/2", "1.0 MiB"],
        [CALL_D, "r-recD", "incomplete", "0/1", "0 B"],
        [CALL_E, "r-recE", "external", "-", "0 B"],
    ]
    assert [r[6] for r in rows[:4]] == [started[c] for c in (CALL_A, CALL_B, CALL_C, CALL_D)]
    time_left = [r[5] for r in rows]
    assert time_left[0] == time_left[2] == time_left[4] == "-"
    assert all(re.fullmatch(r"23h 5\dm", t) for t in (time_left[1], time_left[3])), time_left
    assert [r[8] if len(r) > 8 else "" for r in rows] == [
        "",
        "not archived: 1",
        "1 lost; not archived: 1",
        "1 failed; not archived: 0",
        "",
    ]
    # Aligned: every row's STATE starts in the header's STATE column; SIZE is right-aligned under its header.
    lines = out.splitlines()
    state_at = lines[0].index("STATE")
    size_end = lines[0].index("SIZE") + len("SIZE")
    for line, row in zip(lines[1:], rows, strict=True):
        assert line[state_at:].startswith(row[2])
        assert line[:size_end].endswith(row[4])


async def test_status_json_and_filters(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_cli("status", "--json") == 0
    docs = json.loads(capsys.readouterr().out)
    by_call = {d["callId"]: d for d in docs}
    assert list(by_call) == [CALL_A, CALL_B, CALL_C, CALL_D, CALL_E]
    a, b, c, d, e = (by_call[x] for x in (CALL_A, CALL_B, CALL_C, CALL_D, CALL_E))
    assert (a["state"], a["chunksArchived"], a["chunksTotal"], a["totalBytes"]) == ("complete", 2, 2, 3 * MIB + 3)
    assert a["secondsLeft"] is None and a["recordingId"] == "recA" and a["manifest"] == f"{CALL_A}/r-recA/manifest.json"
    assert (b["state"], b["chunksArchived"], b["chunksTotal"], b["missingChunks"]) == ("incomplete", 2, 3, [1])
    assert b["totalBytes"] == MIB + MIB // 2
    assert 23.5 * 3600 < b["secondsLeft"] <= 24 * 3600
    assert datetime.fromisoformat(b["expiresAt"]) - datetime.now(UTC) > timedelta(hours=23)
    assert (c["state"], c["chunksLost"], c["chunksArchived"]) == ("lost", 1, 1)
    assert (d["state"], d["chunksFailed"], d["totalBytes"]) == ("incomplete", 1, 0)
    assert (e["state"], e["chunksTotal"], e["recordingStartTime"]) == ("external", None, None)
    assert datetime.fromisoformat(a["recordingStartTime"]) == seeded.started[CALL_A]

    async def calls(*args: str) -> list[str]:
        assert await run_cli("status", "--json", *args) == 0
        return [doc["callId"] for doc in json.loads(capsys.readouterr().out)]

    assert await calls("--state", "incomplete") == [CALL_B, CALL_D]
    assert await calls("--state", "failed") == [CALL_D]
    assert await calls("--state", "lost") == [CALL_C]
    assert await calls("--state", "complete") == [CALL_A]
    assert await calls("--state", "external") == [CALL_E]
    since = (seeded.started[CALL_C] - timedelta(hours=1)).isoformat()
    assert await calls("--since", since) == [CALL_C, CALL_D, CALL_E]  # E: no start time, so its createdAt
    assert await calls("--since", since, "--state", "incomplete") == [CALL_D]
    assert await calls("--since", (datetime.now(UTC) + timedelta(days=1)).date().isoformat()) == []

    assert await run_cli("status", "--since", "2026-13-45") == 2  # argparse refuses it
    assert "not an ISO 8601 date" in capsys.readouterr().err
    assert set(STATE_FILTERS) == {"incomplete", "lost", "complete", "external", "failed"}

    day_of_b = seeded.started[CALL_B].date().isoformat()
    assert await calls("--since", day_of_b, "--until", day_of_b) == [CALL_B]  # a date alone: that whole day
    until = seeded.started[CALL_C].isoformat()
    assert await calls("--until", until) == [CALL_A, CALL_B]  # a time: exclusive
    assert await calls("--since", seeded.started[CALL_B].isoformat(), "--until", until) == [CALL_B]


async def test_status_lists_only_the_days_asked_for_and_reads_only_their_manifests(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listed, read = spy_on_lookups(monkeypatch)
    day = seeded.started[CALL_B].date()
    assert await run_cli("status", "--since", day.isoformat(), "--until", day.isoformat(), "--json") == 0
    assert [d["callId"] for d in json.loads(capsys.readouterr().out)] == [CALL_B]
    assert listed == [(seeded.stack.container, day_prefix(day)), (seeded.stack.state_container, HOLDS_PREFIX)]
    assert read == [f"{CALL_B}/r-recB/manifest.json"]


async def test_reindex_makes_the_day_index_again_and_status_finds_every_recording(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after an upgrade from a version without the day index: status finds nothing until reindex has run. On a
    terminal reindex counts the recordings it reaches; with --json it draws nothing and prints the counts."""
    entries = [name async for name in seeded.container.list_blob_names(name_starts_with=DAYS_PREFIX)]
    assert len(entries) == 5
    for name in entries:
        seeded.write_once.allow(seeded.stack.container, name)
        await seeded.container.get_blob_client(name).delete_blob()
    assert await run_cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    assert await run_cli("reindex") == 0
    out = capsys.readouterr().out
    assert "read 4 recording(s) in the archive; created index entries: 5 day, 0 participant" in out  # D: quarantined
    assert tty.getvalue().startswith("\rreindex: 1 recording(s) reached") and tty.getvalue().endswith("\n")
    assert sorted([n async for n in seeded.container.list_blob_names(name_starts_with=DAYS_PREFIX)]) == sorted(entries)
    quiet = Tty()
    monkeypatch.setattr("sys.stderr", quiet)
    assert await run_cli("reindex", "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["recordings"] == 4 and sum(again["created"].values()) == 0 and again["unreadable"] == []
    assert quiet.getvalue() == ""
    assert await run_cli("status", "--json") == 0
    assert [d["callId"] for d in json.loads(capsys.readouterr().out)] == [CALL_A, CALL_B, CALL_C, CALL_D, CALL_E]


# --- verify ------------------------------------------------------------------


async def _tamper(seeded: Seeded) -> bytes:
    """Same size, same blob metadata, other bytes in A's chunk 1; B's chunk 0 deleted; A's chunk 0's metadata
    document edited (on purpose: allowed)."""
    document = seeded.media(CALL_A, 0).rsplit(".", 1)[0] + ".metadata.json"
    for name in (seeded.media(CALL_A, 1), seeded.media(CALL_B, 0), document):
        seeded.write_once.allow(seeded.stack.container, name)
    edited = seeded.container.get_blob_client(document)
    await edited.upload_blob((await (await edited.download_blob()).readall()) + b" ", overwrite=True)
    blob = seeded.container.get_blob_client(seeded.media(CALL_A, 1))
    props = await blob.get_blob_properties()
    forged = b"\x00" * props.size
    await blob.stage_block("Zm9yZ2Vk", forged)  # the chunk was one Put Blob: a block list is not its own
    await blob.commit_block_list([BlobBlock("Zm9yZ2Vk")], metadata=dict(props.metadata))
    await seeded.container.get_blob_client(seeded.media(CALL_B, 0)).delete_blob()
    return forged


async def test_verify_finds_tampered_and_missing_media(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    streamed: list[str] = []
    read_whole: list[str] = []
    real_stream, real_read = BlobArchive.stream, BlobArchive.read_bytes

    def stream(self: BlobArchive, name: str) -> AsyncIterator[bytes]:
        streamed.append(name)
        return real_stream(self, name)

    async def read_bytes(self: BlobArchive, name: str, limit: int = 4 * MIB) -> tuple[bytes, str] | None:
        read_whole.append(name)
        return await real_read(self, name, limit)

    monkeypatch.setattr(BlobArchive, "stream", stream)
    monkeypatch.setattr(BlobArchive, "read_bytes", read_bytes)

    assert await run_cli("verify") == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        "verified 5 chunk(s), 5.5 MiB, in 5 recording(s): 5 ok, 0 mismatch, 0 missing, 2 not archived (not checked)"
    )
    archived = [seeded.media(CALL_A, 0), seeded.media(CALL_A, 1), seeded.media(CALL_B, 0), seeded.media(CALL_B, 2)]
    assert sorted(streamed) == sorted([*archived, seeded.media(CALL_C, 0)])  # every archived chunk, streamed
    # Media never read whole: only manifests, chain-of-custody records and the metadata documents they name are.
    assert all(name.endswith(("/manifest.json", ".custody.json", ".metadata.json")) for name in read_whole)

    forged = await _tamper(seeded)
    assert await run_cli("verify") == 1
    header, rows = table(capsys.readouterr().out)
    assert re.split(r"\s{2,}", header) == list(cli_output.VERIFY_HEADERS)
    expected_sha = seeded.chunks[CALL_A][1].sha256
    actual = hashlib.sha256(forged).hexdigest()
    assert rows[:5] == [
        ["mismatch", seeded.media(CALL_A, 0), "the metadata document's sha256 is not the custody record's"],
        ["mismatch", seeded.media(CALL_A, 1), "committed block list is not the one the custody record names"],
        ["mismatch", seeded.media(CALL_A, 1), f"content sha256 is {actual}, manifest says {expected_sha}"],
        ["mismatch", seeded.media(CALL_A, 1), f"content sha256 is {actual}, custody says {expected_sha}"],
        ["missing", seeded.media(CALL_B, 0), "media blob is missing"],
    ]
    assert rows[5] == [
        "verified 5 chunk(s), 4.5 MiB, in 5 recording(s): 2 ok, 2 mismatch, 1 missing, 2 not archived (not checked)"
    ]

    assert await run_cli("verify", "--json") == 1
    docs = json.loads(capsys.readouterr().out)
    assert {d["callId"]: d["ok"] for d in docs} == {
        CALL_A: False,
        CALL_B: False,
        CALL_C: True,
        CALL_D: True,
        CALL_E: True,
    }
    chunk = docs[0]["chunks"][1]
    assert (chunk["result"], chunk["expectedSha256"], chunk["actualSha256"]) == (
        "mismatch",
        expected_sha,
        hashlib.sha256(forged).hexdigest(),
    )
    assert chunk["expectedSize"] == chunk["actualSize"] == 2 * MIB
    assert [c["result"] for c in docs[1]["chunks"]] == ["missing", "ok"]
    assert [c["result"] for c in docs[2]["chunks"]] == ["ok", "skipped"]  # C: chunk 1 lost, nothing to verify


async def test_verify_named_recordings_and_exit_codes(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    await _tamper(seeded)
    assert await run_cli("verify", CALL_C, "--json") == 0
    assert [d["manifest"] for d in json.loads(capsys.readouterr().out)] == [f"{CALL_C}/r-recC/manifest.json"]
    assert await run_cli("verify", f"{CALL_A}/r-recA", "--json") == 1
    assert [d["callId"] for d in json.loads(capsys.readouterr().out)] == [CALL_A]
    assert await run_cli("verify", f"{CALL_A}/r-recA", CALL_C, CALL_D) == 1
    assert "in 3 recording(s): 1 ok, 2 mismatch, 0 missing, 2 not archived" in capsys.readouterr().out
    unknown = "ffffffff-0000-0000-0000-00000000000f"
    assert await run_cli("verify", unknown) == 1
    _, rows = table(capsys.readouterr().out)
    # One answer: the row says "not found", and so does the summary (it once said "missing", then "0 missing").
    assert rows == [
        ["not found", f"{unknown}/", "no recording under this call"],
        [
            "verified 0 chunk(s), 0 B, in 0 recording(s): 0 ok, 0 mismatch, 0 missing, 0 not archived (not "
            "checked); 1 recording(s) not found"
        ],
    ]
    assert await run_cli("verify", unknown, "--json") == 1
    [doc] = json.loads(capsys.readouterr().out)
    assert (doc["found"], doc["ok"], doc["problems"]) == ("not found", False, ["no recording under this call"])
    assert await run_cli("verify", f"{CALL_A}/r-nope") == 1
    _, rows = table(capsys.readouterr().out)
    assert rows[0] == ["not found", f"{CALL_A}/r-nope/manifest.json", "no manifest"]
    assert rows[1][0].endswith("; 1 recording(s) not found")
    assert await run_cli("verify", "../etc") == 2
    assert "callId contains '..'" in capsys.readouterr().err
    assert await run_cli("verify", "..abc") == 2  # the '..' rule is the one it breaks, not the first character's
    assert capsys.readouterr().err == "verify: '..abc': callId contains '..', which could climb out of its folder\n"
    assert await run_cli("verify", "abc/r-x y") == 2
    assert "recordingKey has characters outside [A-Za-z0-9_=.:-]: ' '" in capsys.readouterr().err


async def test_verify_draws_progress_only_on_a_tty_and_never_with_json(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await run_cli("verify") == 0
    assert "verifying [" not in capsys.readouterr().err
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    assert await run_cli("verify") == 0
    drawn = tty.getvalue()
    assert drawn.startswith("\rverifying [") and "\n" in drawn
    last = drawn.split("\r")[-1]
    assert "100%" in last and "5.5 MiB / 5.5 MiB" in last and "#" * 30 in last
    quiet = Tty()
    monkeypatch.setattr("sys.stderr", quiet)
    assert await run_cli("verify", "--json") == 0
    assert quiet.getvalue() == ""  # --json is for scripts: no progress, terminal or not


def test_progress_bar_is_silent_off_a_tty_and_throttled_on_one() -> None:
    plain = io.StringIO()
    bar = cli_output.ProgressBar("x", plain)
    bar.update(5, 10)
    bar.close()
    assert plain.getvalue() == ""
    tty = Tty()
    bar = cli_output.ProgressBar("x", tty, width=10, interval=3600)
    bar.update(0, 10)
    bar.update(5, 10)  # within the interval: not drawn
    bar.update(10, 10)  # the end is always drawn
    bar.close()
    assert tty.getvalue() == "\rx [..........]   0%  0 B / 10 B\rx [##########] 100%  10 B / 10 B\n"


# --- participant -------------------------------------------------------------


async def test_participant_lists_exactly_their_recordings_from_the_index(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listed, read = spy_on_lookups(monkeypatch)

    async def recordings(participant: str) -> list[tuple[str, str]]:
        listed.clear()
        read.clear()
        assert await run_cli("participant", participant, "--json") == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["participantId"] == participant
        # One listing of the participant's index prefix, one of the legal-hold registry; never the whole archive.
        assert [prefix for _container, prefix in listed] == [participant_prefix(participant), HOLDS_PREFIX]
        assert sorted(read) == sorted(r["manifest"] for r in doc["recordings"])  # and only their manifests
        return [(r["callId"], r["state"]) for r in doc["recordings"]]

    assert await recordings(ALICE) == [(CALL_A, "complete"), (CALL_C, "lost")]  # not E: external, nothing indexed
    assert await recordings(BOB) == [(CALL_A, "complete"), (CALL_B, "incomplete")]  # not D: it never got metadata
    assert await recordings(CAROL) == [(CALL_B, "incomplete")]
    assert await recordings(DAVE) == []  # only in chunks that were never archived
    assert await recordings("8:acs:nobody") == []

    assert await run_cli("participant", BOB) == 0
    header, rows = table(capsys.readouterr().out)
    assert re.split(r"\s{2,}", header) == list(cli_output.PARTICIPANT_HEADERS)
    started = {c: seeded.started[c].strftime("%Y-%m-%d %H:%M:%SZ") for c in (CALL_A, CALL_B)}
    assert rows == [
        [CALL_A, "r-recA", "complete", started[CALL_A], "2/2", "3.0 MiB", "-"],
        [CALL_B, "r-recB", "incomplete", started[CALL_B], "2/3", "1.5 MiB", "-"],
    ]
    assert await run_cli("participant", DAVE) == 0
    assert capsys.readouterr().out.strip() == "no archived recordings for this participant"


async def test_a_missing_container_is_reported_not_created(
    stack: Stack, blob_service: BlobServiceClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    assert await run_cli("status") == 2
    err = capsys.readouterr().err
    assert f"'{stack.container}'" in err and f"'{stack.state_container}'" in err and "do not exist" in err
    assert await run_cli("participant", ALICE) == 2
    assert not await blob_service.get_container_client(stack.container).exists()  # read-only: nothing created


# --- pure rendering ------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-5, "expired"),
        (0, "expired"),
        (30, "<1m"),
        (125, "2m"),
        (3 * 3600 + 60, "3h 01m"),
        (86400 + 7200, "1d 02h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert cli_output.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (3 * MIB + 3, "3.0 MiB"), (5 << 40, "5.0 TiB")]
)
def test_format_bytes(count: int, text: str) -> None:
    assert cli_output.format_bytes(count) == text


async def test_status_survives_a_manifest_moved_to_the_archive_tier(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lifecycle rule may archive-tier old manifests; status reports them instead of failing."""
    name = f"{CALL_A}/r-recA/manifest.json"
    await seeded.state.get_blob_client(name).set_standard_blob_tier("Archive")
    assert await run_cli("status") == 0
    captured = capsys.readouterr()
    _, rows = table(captured.out)
    assert CALL_A not in [r[0] for r in rows] and CALL_B in [r[0] for r in rows]
    assert f"unreadable manifest: {name}: in the archive tier: rehydrate it to read" in captured.err


# --- rebuild-state -------------------------------------------------------------


def _essentials(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the archive's records prove of a recording: everything but the state's own bookkeeping."""
    keep = ("state", "mediaBlob", "metadataBlob", "size", "sha256", "contentType", "index", "documentId", "endReason")
    chunks = {
        key: {k: v for k, v in entry.items() if k in keep} | {"deleted": bool(entry.get("sourceDeletedAt"))}
        for key, entry in manifest["chunks"].items()
        if entry["state"] in ("archived", "lost")
    }
    fields = ("callId", "recordingId", "recordingKey", "state", "lastChunkIndex", "storageType", "expiresAt")
    return {k: manifest.get(k) for k in fields} | {"chunks": chunks}


async def test_rebuild_state_makes_every_manifest_again_from_the_write_once_records(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {}
    async for name in seeded.state.list_blob_names():
        if name.endswith("/manifest.json"):
            before[name] = json.loads(await (await seeded.state.get_blob_client(name).download_blob()).readall())
            await seeded.state.get_blob_client(name).delete_blob()  # the state is lost
    assert await run_cli("rebuild-state", "--dry-run") == 0
    captured = capsys.readouterr()
    assert "would write 4 manifest(s)" in captured.out and "listed" not in captured.err  # not a terminal
    tty = Tty()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", tty)
        assert await run_cli("rebuild-state", "--dry-run") == 0
    drawn = tty.getvalue()
    assert drawn.startswith("\rrebuild-state: 1 blob(s) listed") and drawn.endswith("\n")
    assert [n async for n in seeded.state.list_blob_names() if n.endswith("/manifest.json")] == []
    assert await run_cli("rebuild-state") == 0
    assert "wrote 4 manifest(s)" in capsys.readouterr().out
    after = {}
    async for name in seeded.state.list_blob_names():
        if name.endswith("/manifest.json"):
            after[name] = json.loads(await (await seeded.state.get_blob_client(name).download_blob()).readall())
    # D only ever failed: nothing of it is in the archive, and its job waits in the poison queue and _quarantine/.
    assert set(after) == set(before) - {f"{CALL_D}/r-recD/manifest.json"}
    for name, manifest in after.items():
        assert _essentials(manifest) == _essentials(before[name]), name
    assert await run_cli("status", "--json") == 0
    states = {r["callId"]: r["state"] for r in json.loads(capsys.readouterr().out)}
    assert states == {CALL_A: "complete", CALL_B: "incomplete", CALL_C: "lost", CALL_E: "external"}


# --- legal hold ----------------------------------------------------------------


async def test_hold_on_azurite_says_it_cannot_and_records_nothing(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    """Azurite does not implement Set Blob Legal Hold: the command says so in one line and records no case, so no
    command shows a hold the storage never took (tests/unit/test_holds.py covers the rest on in-memory edges)."""
    assert await run_cli("hold", "place", "CASE-7") == 2
    assert "the following arguments are required: RECORDING" in capsys.readouterr().err
    assert await run_cli("hold", "place", "../x", CALL_A) == 2
    assert "case id contains '..'" in capsys.readouterr().err
    assert await run_cli("hold", "place", "CASE-7", CALL_A) == 2
    err = capsys.readouterr().err
    assert err.startswith("hold place: this storage does not implement legal holds (legal hold on ")
    assert "501" in err and err.rstrip().endswith("nothing was held or recorded") and err.count("\n") == 1
    assert [n async for n in seeded.state.list_blob_names(name_starts_with=HOLDS_PREFIX)] == []
    for prefix in (CASES_PREFIX, ACCESS_PREFIX, ACCESS_INDEX_PREFIX):  # no case filed, no access recorded
        assert [n async for n in seeded.container.list_blob_names(name_starts_with=prefix)] == []
    assert await run_cli("hold", "list", "CASE-7") == 0
    assert capsys.readouterr().out == "case CASE-7: no hold registered\nno recordings indexed\n"
    assert await run_cli("hold", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert await run_cli("status", "--json") == 0
    assert all(r["holds"] == [] for r in json.loads(capsys.readouterr().out))
    assert await run_cli("hold", "clear", "CASE-7") == 2
    assert "no open legal hold for case 'CASE-7'" in capsys.readouterr().err
