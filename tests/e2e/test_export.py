"""``recording-archive export`` on an archive the real pipeline wrote (Azurite, the simulator as ACS): bags that
the Library of Congress's ``bagit`` validates and ``sha256sum -c`` checks, to a folder, a .zip and another
container by server-side copy; a changed byte refused and named; an interrupted export resumed; the access
record it leaves."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import bagit
import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.request_census import read_log
from recording_pipeline.app.access import accesses_of
from recording_pipeline.app.export import ExportQuery, export_bag, plan_export, select_recordings
from recording_pipeline.core.errors import ExportIntegrityError, ExportTargetError
from recording_pipeline.edges.archive import BlobArchive
from recording_pipeline.edges.bag_container import ContainerBag
from recording_pipeline.edges.bag_folder import FolderBag
from tests.e2e.test_operations_cli import (
    ALICE,
    CALL_A,
    CALL_B,
    CALL_C,
    CALL_E,
    Seeded,
    _restore_logging,  # noqa: F401 - autouse: main() swaps the log handlers
    run_cli,
)
from tests.support.terminal import Tty

MIB = 1024 * 1024


def validate(bag: Path) -> bagit.Bag:
    """The outside checkers: the Library of Congress's bagit, and coreutils' sha256sum on both manifests."""
    opened = bagit.Bag(str(bag))
    opened.validate()  # raises BagValidationError: completeness, Payload-Oxum, every digest
    for manifest in ("manifest-sha256.txt", "tagmanifest-sha256.txt"):
        checked = subprocess.run(["sha256sum", "-c", "--strict", manifest], cwd=bag, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    return opened


def payload(bag: Path) -> list[str]:
    return sorted(p.relative_to(bag).as_posix() for p in (bag / "data").rglob("*") if p.is_file())


async def test_a_call_exported_to_a_folder_is_a_bag_bagit_and_sha256sum_validate(
    seeded: Seeded, archive_edge: BlobArchive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = tmp_path / "case-a"
    assert await run_cli("export", "--call", CALL_A, "--to", str(bag), "--by", "ana@desk") == 0
    out = capsys.readouterr().out
    assert f"exported 1 recording(s), 2 chunk(s): 8 file(s), 3.0 MiB, to folder {bag.resolve()}" in out
    opened = validate(bag)
    stems = [seeded.media(CALL_A, i).removesuffix(".mp4") for i in (0, 1)]
    expected = [
        f"data/{s}{x}" for s in stems for x in (".custody.json", ".metadata.json", ".mp4", ".source-deleted.json")
    ]
    assert payload(bag) == sorted(expected)
    for index, stem in enumerate(stems):  # the media is the simulator's file, byte for byte
        assert (
            hashlib.sha256((bag / f"data/{stem}.mp4").read_bytes()).hexdigest() == seeded.chunks[CALL_A][index].sha256
        )
    info = opened.info
    assert info["Exported-By"] == "ana@desk" and info["Bag-Software-Agent"].startswith("recording-archive ")
    assert json.loads(info["Export-Query"]) == {"call": [CALL_A]} and info["Bagging-Date"]
    assert info["Payload-Oxum"] == f"{sum(p.stat().st_size for p in (bag / 'data').rglob('*') if p.is_file())}.8"
    rows = (bag / "index.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith(f"{CALL_A},r-recA,recA,")
    index = json.loads((bag / "index.json").read_text())
    assert index["recordings"][0]["complete"] is True and [c["chunkIndex"] for c in index["chunks"]] == [0, 1]
    assert not (bag / ".export-journal").exists()

    # The access record: who, what, when, and the digest of the bag's manifest.
    [record] = await accesses_of(archive_edge, CALL_A, "r-recA")
    assert (record.action, record.actor, record.query) == ("export", "ana@desk", {"call": [CALL_A]})
    manifest = (bag / "manifest-sha256.txt").read_bytes()
    assert record.details["manifestSha256"] == hashlib.sha256(manifest).hexdigest() in out
    assert record.id == info["External-Identifier"] and record.name in out


async def test_a_participant_s_recordings_exported_to_a_zip_carry_the_lost_chunk_s_record(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "alice.zip"
    assert await run_cli("export", "--participant", ALICE, "--to", str(target), "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["recordings"] == 2 and result["chunks"] == 3  # A (2 chunks) and C (1 archived, 1 lost)
    assert not (tmp_path / "alice.zip.partial").exists()
    with zipfile.ZipFile(target) as bundle:
        assert {name.split("/")[0] for name in bundle.namelist()} == {"alice"}
        bundle.extractall(tmp_path / "unzipped")
    bag = tmp_path / "unzipped" / "alice"
    validate(bag)
    assert [p for p in payload(bag) if p.startswith("data/_lost/")] == [
        f"data/_lost/{CALL_C}/r-recC/00001-{seeded.chunks[CALL_C][1].document_id}.json"
    ]
    states = {
        (c["callId"], c["chunkIndex"]): c["state"] for c in json.loads((bag / "index.json").read_text())["chunks"]
    }
    assert states == {(CALL_A, 0): "archived", (CALL_A, 1): "archived", (CALL_C, 0): "archived", (CALL_C, 1): "lost"}


async def test_a_time_range_exports_the_recordings_started_in_it(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = seeded.started[CALL_B].date().isoformat()
    assert await run_cli("export", "--since", day, "--until", day, "--to", str(tmp_path / "b"), "--json") == 0
    assert json.loads(capsys.readouterr().out)["recordings"] == 1
    index = json.loads((tmp_path / "b" / "index.json").read_text())
    assert [r["callId"] for r in index["recordings"]] == [CALL_B]
    assert index["recordings"][0]["complete"] is False  # chunk 1 was never delivered
    validate(tmp_path / "b")
    # A bring-your-own-storage recording: ACS wrote it elsewhere; its bag holds the record that says so.
    assert await run_cli("export", "--call", CALL_E, "--to", str(tmp_path / "e"), "--json") == 0
    assert (json.loads(capsys.readouterr().out)["files"], payload(tmp_path / "e")) == (
        1,
        [f"data/{CALL_E}/r-recE/external.json"],
    )
    validate(tmp_path / "e")
    assert await run_cli("export", "--case", "CASE-NONE", "--to", str(tmp_path / "none")) == 2
    assert "nothing archived matches" in capsys.readouterr().err
    assert await run_cli("export", "--to", str(tmp_path / "all")) == 2
    assert "name what to export" in capsys.readouterr().err
    # A folder this machine cannot make (its parent is a file): one line, exit 2, as for a setting or the storage.
    (tmp_path / "a-file").write_text("")
    assert await run_cli("export", "--call", CALL_A, "--to", str(tmp_path / "a-file" / "bag")) == 2
    err = capsys.readouterr().err
    assert err.startswith("export: the bag could not be written: ") and err.count("\n") == 1
    assert "Traceback" not in err and str(tmp_path / "a-file") in err


async def _flip_a_byte(seeded: Seeded, call: str, index: int) -> str:
    """One byte of an archived media blob changed, in place (on purpose: the write-once guard is told)."""
    name = seeded.media(call, index)
    seeded.write_once.allow(seeded.stack.container, name)
    blob = seeded.container.get_blob_client(name)
    data = bytearray(await (await blob.download_blob()).readall())
    data[len(data) // 2] ^= 0x01
    await blob.upload_blob(bytes(data), overwrite=True)
    return name


async def test_a_changed_byte_is_refused_and_the_chunk_named_and_the_bag_left_unfinished(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _flip_a_byte(seeded, CALL_A, 1)
    bag = tmp_path / "tampered"
    assert await run_cli("export", "--call", CALL_A, "--to", str(bag)) == 1
    out = capsys.readouterr().out
    document = seeded.chunks[CALL_A][1].document_id
    assert "the bag is not finished: 1 file(s) differ from their chain of custody" in out
    assert f"chunk 1 ({document}) of {CALL_A}/r-recA: media sha256 is " in out
    assert f"its chain-of-custody record says {seeded.chunks[CALL_A][1].sha256}" in out
    assert not (bag / "bagit.txt").exists() and (bag / ".export-journal").exists()
    assert not list(bag.rglob("*.partial")) and not (bag / f"data/{seeded.media(CALL_A, 1)}").exists()
    with pytest.raises(bagit.BagError):
        bagit.Bag(str(bag))
    assert [n async for n in seeded.container.list_blob_names(name_starts_with="_access/")] == []  # no hand-over

    # To another container as well: the copy is read back, and refused the same way.
    assert await run_cli("export", "--call", CALL_A, "--to-container", "handover/tampered") == 1
    assert f"chunk 1 ({document}) of {CALL_A}/r-recA: media sha256 is " in capsys.readouterr().out
    handover = seeded.stack.azurite.connection_string
    async with BlobServiceClient.from_connection_string(handover) as service:
        names = [
            n async for n in service.get_container_client("handover").list_blob_names(name_starts_with="tampered/")
        ]
    assert "tampered/bagit.txt" not in names and f"tampered/data/{seeded.media(CALL_A, 1)}" not in names


class _Interrupted(Exception):
    pass


class _StopsAfter:
    """A target that is interrupted after ``keeps`` files are kept, as a killed export would be."""

    def __init__(self, target: Any, keeps: int) -> None:
        self._target, self._left = target, keeps
        self.description = target.description

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    async def keep(self, path: str, sha256: str, size: int) -> None:
        if self._left == 0:
            raise _Interrupted
        self._left -= 1
        await self._target.keep(path, sha256, size)


@pytest.fixture
async def archive_edge(seeded: Seeded) -> AsyncIterator[BlobArchive]:
    service = BlobServiceClient.from_connection_string(seeded.stack.azurite.connection_string)
    yield BlobArchive(service, seeded.stack.container)
    await service.close()


async def test_an_interrupted_export_resumes_after_the_files_it_kept(
    seeded: Seeded, archive_edge: BlobArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = ExportQuery(calls=(CALL_A, CALL_B))
    plan = await plan_export(archive_edge, await select_recordings(archive_edge, query, seeded_now(seeded)), query)
    bag = tmp_path / "resumed"
    with pytest.raises(_Interrupted):
        await export_bag(archive_edge, plan, _StopsAfter(FolderBag(bag), 5), query=query, actor="a", archive_url="u")
    journal = (bag / ".export-journal").read_text().splitlines()
    assert len(journal) == 1 + 5 and not (bag / "bagit.txt").exists()
    (bag / "data" / "stale.partial").write_bytes(b"left by the kill")  # a file cut off mid-write
    read: list[str] = []
    real_stream = BlobArchive.stream

    def stream(self: BlobArchive, name: str) -> AsyncIterator[bytes]:
        read.append(name)
        return real_stream(self, name)

    monkeypatch.setattr(BlobArchive, "stream", stream)
    result = await export_bag(archive_edge, plan, FolderBag(bag), query=query, actor="b", archive_url="u")
    assert result.resumed_files == 5 and result.files == len(plan.files) == 16  # A and B: 2 chunks × 4 files each
    kept_first = {json.loads(line)["path"].removeprefix("data/") for line in journal[1:]}
    assert len(read) == 16 - 5 and not kept_first & set(read)  # nothing kept was read again
    assert result.export_id == json.loads(journal[0])["exportId"]  # the same export, finished
    validate(bag)
    assert not (bag / "data" / "stale.partial").exists()
    with pytest.raises(ExportTargetError, match="finished bag"):  # a finished bag is never written again
        await export_bag(archive_edge, plan, FolderBag(bag), query=query, actor="c", archive_url="u")
    other = ExportQuery(calls=(CALL_C,))
    half = tmp_path / "half"
    with pytest.raises(_Interrupted):
        await export_bag(archive_edge, plan, _StopsAfter(FolderBag(half), 1), query=query, actor="a", archive_url="u")
    with pytest.raises(ExportTargetError, match="unfinished export of another query"):
        await export_bag(archive_edge, plan, FolderBag(half), query=other, actor="a", archive_url="u")


def seeded_now(seeded: Seeded) -> Any:
    return max(seeded.started.values()) + timedelta(days=2)


async def test_to_another_container_the_storage_service_copies_and_the_copies_are_read_back(
    seeded: Seeded, archive_edge: BlobArchive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    azurite = seeded.stack.azurite
    assert azurite.log_path is not None
    _, start = read_log(azurite.log_path)
    assert await run_cli("export", "--call", CALL_A, "--to-container", "handover/CASE-1", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["files"] == 8 and result["target"].endswith("/handover/CASE-1")
    requests, _ = read_log(azurite.log_path, start)
    media = {seeded.media(CALL_A, i) for i in (0, 1)}
    archive_gets = [r for r in requests if r.container == seeded.stack.container and r.method == "GET"]
    assert not [r for r in archive_gets if r.blob in media]  # the media never came through this process
    copies = [r for r in requests if r.container == "handover" and r.method == "PUT" and not r.comp]
    assert {r.blob.removeprefix("CASE-1/data/") for r in copies} >= media  # Copy Blob, by the service
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client("handover")
        names = [n async for n in container.list_blob_names(name_starts_with="CASE-1/")]
        assert "CASE-1/.export-journal.json" not in names and "CASE-1/bagit.txt" in names
        for name in names:  # as the receiver would: azcopy the folder down, then check it
            place = tmp_path / "down" / name.removeprefix("CASE-1/")
            place.parent.mkdir(parents=True, exist_ok=True)
            place.write_bytes(await (await container.get_blob_client(name).download_blob()).readall())
    validate(tmp_path / "down")

    # Interrupted and run again: the copies already checked are kept, the others copied again.
    query = ExportQuery(calls=(CALL_B,))
    plan = await plan_export(archive_edge, await select_recordings(archive_edge, query, seeded_now(seeded)), query)
    target = ContainerBag(archive_edge.sibling("handover"), "CASE-2")
    with pytest.raises(_Interrupted):
        await export_bag(archive_edge, plan, _StopsAfter(target, 3), query=query, actor="a", archive_url="u")
    again = ContainerBag(archive_edge.sibling("handover"), "CASE-2")
    resumed = await export_bag(archive_edge, plan, again, query=query, actor="a", archive_url="u")
    assert resumed.resumed_files == 3 and resumed.files == 8


async def test_a_blob_missing_from_the_archive_is_named_too(
    seeded: Seeded, archive_edge: BlobArchive, tmp_path: Path
) -> None:
    name = seeded.media(CALL_B, 0)
    seeded.write_once.allow(seeded.stack.container, name)
    await seeded.container.get_blob_client(name).delete_blob()
    query = ExportQuery(calls=(CALL_B,))
    plan = await plan_export(archive_edge, await select_recordings(archive_edge, query, seeded_now(seeded)), query)
    with pytest.raises(ExportIntegrityError, match=f"chunk 0 .* media blob {name} is missing from the archive"):
        await export_bag(archive_edge, plan, FolderBag(tmp_path / "b"), query=query, actor="a", archive_url="u")


async def test_progress_is_drawn_on_a_terminal_and_never_with_json(
    seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    assert await run_cli("export", "--call", CALL_A, "--to", str(tmp_path / "drawn")) == 0
    last = tty.getvalue().split("\r")[-1]
    assert tty.getvalue().startswith("\rexporting [") and "100%  3.0 MiB / 3.0 MiB" in last
    tty.seek(0)
    tty.truncate()
    assert await run_cli("export", "--call", CALL_A, "--to", str(tmp_path / "quiet"), "--json") == 0
    assert "exporting" not in tty.getvalue()
