"""A bag in a local folder, or in a .zip file made from one (core.ports.BagTarget).

Each payload file is written to ``{path}.partial``, piece by piece on a worker thread, and renamed to its place
once the export has checked its digest; then a line ``{"path", "sha256", "size"}`` is appended to the journal,
``.export-journal`` at the bag's root, whose first line is the export's header (its id, query, who, when). An
export run again with the same query finds the journal, drops the partial files, and skips every file the
journal names that is still there with its size: it resumes. ``bagit.txt`` is written last, the journal removed
after it: a folder with ``bagit.txt`` and no journal is a finished bag, never written to again.

A .zip target builds the bag in ``{name}.zip.partial/`` as above, then stores it (media does not compress) into
``{name}.zip`` with the bag in a folder ``{name}/`` as BagIt tools expect of a zipped bag, zip64 for any size,
streamed from disk; only then is the folder removed. Interrupted while zipping, it zips again on the next run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import zipfile
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

from recording_pipeline.core.bag import BAGIT
from recording_pipeline.core.errors import ExportTargetError

JOURNAL = ".export-journal"
PARTIAL = ".partial"


class FolderBag:
    def __init__(self, root: Path, description: str | None = None, zipping: bool = False) -> None:
        self.root = root
        self.description = description or f"folder {root.resolve()}"
        self._zipping = zipping  # the staging folder of a .zip: finished, it is zipped, not refused

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    async def open(self, header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
        return await asyncio.to_thread(self._open, header)

    def _open(self, header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
        if self.journal.exists():
            return self._resume(header)
        if (self.root / BAGIT).exists():
            raise ExportTargetError(f"{self.root} is a finished bag: export to another folder")
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise ExportTargetError(f"{self.root} exists and is not an unfinished export: choose a new folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal.write_text(json.dumps(header) + "\n")
        return header, {}

    def _resume(self, header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
        lines = self.journal.read_text().split("\n")
        earlier = json.loads(lines[0])
        if earlier.get("query") != header["query"]:
            raise ExportTargetError(
                f"{self.root} holds an unfinished export of another query ({json.dumps(earlier.get('query'))}): "
                "run that export again to finish it, or choose another folder"
            )
        kept: dict[str, tuple[str, int]] = {}
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:  # the last line, cut short by the interruption
                continue
            path = self.root / entry["path"]
            if path.is_file() and path.stat().st_size == entry["size"]:
                kept[entry["path"]] = (entry["sha256"], entry["size"])
        for partial in self.root.rglob(f"*{PARTIAL}"):
            partial.unlink()
        return earlier, kept

    async def write(self, path: str, pieces: AsyncIterable[bytes]) -> None:
        partial = self._place(path + PARTIAL)
        await asyncio.to_thread(partial.parent.mkdir, parents=True, exist_ok=True)
        file = await asyncio.to_thread(partial.open, "wb")
        try:
            async for piece in pieces:
                await asyncio.to_thread(file.write, piece)
        finally:
            await asyncio.to_thread(file.close)

    async def keep(self, path: str, sha256: str, size: int) -> None:
        await asyncio.to_thread(self._keep, path, sha256, size)

    def _keep(self, path: str, sha256: str, size: int) -> None:
        os.replace(self._place(path + PARTIAL), self._place(path))
        with self.journal.open("a") as journal:
            journal.write(json.dumps({"path": path, "sha256": sha256, "size": size}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    async def discard(self, path: str) -> None:
        await asyncio.to_thread(self._place(path + PARTIAL).unlink, missing_ok=True)

    async def write_tag(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_whole, self._place(name), data)

    async def finish(self, bagit: bytes) -> None:
        await asyncio.to_thread(self._write_whole, self._place(BAGIT), bagit)
        if not self._zipping:  # a .zip's staging folder keeps its journal until it is zipped
            await asyncio.to_thread(self.journal.unlink)

    def _place(self, path: str) -> Path:
        """A bag-relative path inside the bag's folder (core.bag checked it already: never outside)."""
        place = (self.root / path).resolve()
        if not place.is_relative_to(self.root.resolve()):
            raise ExportTargetError(f"{path!r} is outside the bag")
        return place

    @staticmethod
    def _write_whole(place: Path, data: bytes) -> None:
        temporary = place.with_name(place.name + PARTIAL)
        temporary.write_bytes(data)
        os.replace(temporary, place)


class ZipBag(FolderBag):
    def __init__(self, path: Path) -> None:
        if path.suffix.lower() != ".zip":
            raise ExportTargetError(f"{path} does not end in .zip")
        super().__init__(path.with_name(path.name + PARTIAL), f"zip {path.resolve()}", zipping=True)
        self.path = path

    def _open(self, header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
        if self.path.exists():
            raise ExportTargetError(f"{self.path} exists: export to another file")
        return super()._open(header)

    async def finish(self, bagit: bytes) -> None:
        await super().finish(bagit)
        await asyncio.to_thread(self._zip)

    def _zip(self) -> None:
        top = self.path.name[: -len(".zip")]
        building = self.path.with_name(self.path.name + ".tmp")
        with zipfile.ZipFile(building, "w", zipfile.ZIP_STORED, allowZip64=True) as bundle:
            for place in sorted(p for p in self.root.rglob("*") if p.is_file() and p.name != JOURNAL):
                bundle.write(place, f"{top}/{place.relative_to(self.root).as_posix()}")
        os.replace(building, self.path)
        shutil.rmtree(self.root)
