"""Legal holds: every blob of a call or recording kept, whatever its retention, until a case is closed.

A hold is placed on each blob's current version (version-level immutability,
``Set Blob Legal Hold``); the blob cannot be deleted while any hold is on it.
The service's hold carries no name, so the case id, and which blobs it covers,
are kept in a registry in the state container (``_holds/{case}.json``). Placing
a hold first holds one blob: a storage that refuses it (Azurite implements no
legal holds; an identity without Storage Blob Data Owner) records nothing, so no
command shows a hold the storage never took. Then it names the registry, then
holds each other blob: a hold interrupted half-way is finished by placing it
again. Once the storage has taken every hold, the case is filed in the
archive's case index (``_index/cases/``, which ``hold list CASE`` reads) and the
change leaves a write-once access record; clearing leaves one too. Clearing
releases only the blobs no other open case still holds, and marks the case
cleared only once they are released.

What a hold covers: every blob of the recording in the archive (media,
metadata document, custody and source-deleted records, the external record),
its ``_lost/`` records, and the participant index entries that name it. Chunks
archived after the hold was placed are covered when the hold is placed again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from recording_pipeline import __version__
from recording_pipeline.app.access import record_access
from recording_pipeline.app.recording_index import file_case, recordings_of_case
from recording_pipeline.cli.manifests import read_manifests
from recording_pipeline.cli.output import render_table, to_json
from recording_pipeline.cli.storage import OperatorEdges, operator_name
from recording_pipeline.cli.targets import parse_target
from recording_pipeline.core.access import access_record
from recording_pipeline.core.errors import HoldRefusedError, InvalidEventError, OperatorInputError, StorageError
from recording_pipeline.core.metadata import parse_metadata
from recording_pipeline.core.naming import (
    HOLDS_PREFIX,
    LOST_PREFIX,
    check_id,
    hold_name,
    participant_entry,
    recording_prefix,
)
from recording_pipeline.core.ports import ArchiveStore, HoldableArchive, StateStore
from recording_pipeline.core.state import Instant


class Hold(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel)

    case: str
    placed_at: Instant
    cleared_at: Instant | None = None
    targets: list[str]
    recordings: list[tuple[str, str]]  # (callId, recordingKey)
    blobs: list[str]

    @property
    def active(self) -> bool:
        return self.cleared_at is None


async def select_blobs(archive: ArchiveStore, targets: Iterable[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The recordings ``targets`` name (``callId`` or ``callId/recordingKey``), and every archive blob of theirs."""
    recordings: set[tuple[str, str]] = set()
    blobs: set[str] = set()
    for call_id, rec_key in (parse_target(t) for t in targets):
        prefix = recording_prefix(call_id, rec_key) if rec_key else f"{call_id}/"
        async for name in archive.list_names(prefix):
            parts = name.split("/")
            if len(parts) == 3:
                recordings.add((parts[0], parts[1]))
                blobs.add(name)
    for call_id, rec_key in sorted(recordings):
        async for name in archive.list_names(f"{LOST_PREFIX}{recording_prefix(call_id, rec_key)}"):
            blobs.add(name)
        for name in [b for b in list(blobs) if b.startswith(recording_prefix(call_id, rec_key))]:
            if name.endswith(".metadata.json"):
                found = await archive.read_bytes(name)
                for pid in parse_metadata(found[0]).participants if found else []:
                    entry = participant_entry(pid, call_id, rec_key)
                    if await archive.info(entry) is not None:
                        blobs.add(entry)
    return sorted(recordings), sorted(blobs)


async def place_hold(
    archive: HoldableArchive, state: StateStore, case: str, targets: list[str], now: datetime, actor: str = "unknown"
) -> Hold:
    """Hold every blob of the targets for ``case``; placing it again adds what was archived since. Once storage
    has taken every hold, the case is filed in the archive's index and the change leaves an access record."""
    _check_case(case)
    recordings, blobs = await select_blobs(archive, targets)
    if not blobs:
        raise OperatorInputError(f"nothing is archived under {', '.join(targets)}")
    await _set_hold(archive, blobs[0], True)  # the storage takes a hold before the registry names one

    def merge(doc: object | None) -> object:
        earlier = _parse(doc)
        hold = Hold(
            case=case,
            placed_at=earlier.placed_at if earlier and earlier.active else now,
            targets=sorted({*(earlier.targets if earlier and earlier.active else []), *targets}),
            recordings=sorted({*(earlier.recordings if earlier and earlier.active else []), *recordings}),
            blobs=sorted({*(earlier.blobs if earlier and earlier.active else []), *blobs}),
        )
        return hold.model_dump(mode="json", by_alias=True)

    try:
        written = (await state.update_json(hold_name(case), merge)).doc
    except Exception:
        if blobs[0] not in {b for other in await active_holds(state) for b in other.blobs}:
            await archive.set_legal_hold(blobs[0], False)  # recorded nowhere: not left held
        raise
    hold = Hold.model_validate(written)
    for blob in hold.blobs:
        if blob != blobs[0]:
            await _set_hold(archive, blob, True)
    await file_case(archive, case, recordings)
    await record_access(
        archive,
        access_record("hold-place", actor, now, recordings, __version__, case=case, query={"targets": targets}),
    )
    return hold


async def _set_hold(archive: HoldableArchive, blob: str, hold: bool) -> None:
    """A refusal by the storage (it answered, and said no) is a HoldRefusedError; no answer stays a StorageError."""
    try:
        await archive.set_legal_hold(blob, hold)
    except StorageError as exc:
        if exc.status is None or isinstance(exc, HoldRefusedError):
            raise
        raise HoldRefusedError(str(exc), exc.status, exc.code) from None


async def clear_hold(
    archive: HoldableArchive, state: StateStore, case: str, now: datetime, actor: str = "unknown"
) -> tuple[Hold, int]:
    """Close ``case``: release its blobs that no other open case holds. Returns the hold and how many were kept."""
    _check_case(case)
    found = await state.read_json(hold_name(case))
    hold = _parse(found[0]) if found else None
    if hold is None or not hold.active:
        raise OperatorInputError(f"no open legal hold for case {case!r}")
    still_held = {blob for other in await active_holds(state) if other.case != case for blob in other.blobs}
    for blob in hold.blobs:
        if blob not in still_held:
            await _set_hold(archive, blob, False)
    cleared = hold.model_copy(update={"cleared_at": now})
    await state.update_json(hold_name(case), lambda _doc: cleared.model_dump(mode="json", by_alias=True))
    await record_access(archive, access_record("hold-clear", actor, now, list(hold.recordings), __version__, case=case))
    return cleared, len(set(hold.blobs) & still_held)


async def active_holds(state: StateStore) -> list[Hold]:
    holds = []
    async for name in state.list_names(HOLDS_PREFIX):
        found = await state.read_json(name)
        hold = _parse(found[0]) if found else None
        if hold is not None and hold.active:
            holds.append(hold)
    return holds


async def held_recordings(state: StateStore) -> dict[tuple[str, str], tuple[str, ...]]:
    """(callId, recordingKey) → the cases whose legal hold covers it, from the hold registry."""
    held: dict[tuple[str, str], list[str]] = {}
    for hold in await active_holds(state):
        for recording in hold.recordings:
            held.setdefault(recording, []).append(hold.case)
    return {key: tuple(sorted(cases)) for key, cases in held.items()}


async def case_recordings(archive: ArchiveStore, state: StateStore, case: str) -> list[dict[str, Any]]:
    """The recordings a case covered, from the archive's case index (one listing), with their manifests' state."""
    _check_case(case)
    refs, _odd = await recordings_of_case(archive, case)
    docs, _unreadable = await read_manifests(state, [ref.manifest for ref in refs])
    return [
        {
            "callId": ref.call_id,
            "recordingKey": ref.recording_key,
            "state": doc.state.value if doc else None,
            "recordingStartTime": doc.recording_start_time.isoformat() if doc and doc.recording_start_time else None,
        }
        for ref, (_name, doc) in zip(refs, docs, strict=True)
    ]


async def case_listing(archive: ArchiveStore, state: StateStore, case: str, as_json: bool) -> str:
    """``hold list CASE``: whether the case is open, and every recording it covered."""
    found = await state.read_json(hold_name(case))
    hold = _parse(found[0]) if found else None
    covered = await case_recordings(archive, state, case)
    status = "no hold registered" if hold is None else "open" if hold.active else "cleared"
    if as_json:
        return to_json({"case": case, "status": status, "recordings": covered})
    rows = [
        [r["callId"], r["recordingKey"], r["state"] or "no manifest", r["recordingStartTime"] or "-"] for r in covered
    ]
    table = render_table(("CALL ID", "RECORDING", "STATE", "STARTED"), rows) if rows else "no recordings indexed"
    return f"case {case}: {status}\n{table}"


def _check_case(case: str) -> None:
    """A case id becomes a blob name in the registry: it must be a safe name."""
    try:
        check_id(case, "case id")
    except InvalidEventError as exc:
        raise OperatorInputError(str(exc)) from None


def _parse(doc: object | None) -> Hold | None:
    if doc is None:
        return None
    try:
        return Hold.model_validate(doc)
    except ValidationError:
        return None


async def run(edges: OperatorEdges, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    if args.action == "place":
        await edges.state.ensure()
        try:
            hold = await place_hold(edges.archive, edges.state, args.case, args.targets, now, operator_name())
        except HoldRefusedError as exc:
            print(f"hold place: {refusal(exc)}; nothing was held or recorded", file=sys.stderr)
            return 2
        print(f"case {hold.case}: {len(hold.blobs)} blob(s) of {len(hold.recordings)} recording(s) under legal hold")
    elif args.action == "clear":
        try:
            hold, kept = await clear_hold(edges.archive, edges.state, args.case, now, operator_name())
        except HoldRefusedError as exc:
            print(f"hold clear: {refusal(exc)}; the case stays open", file=sys.stderr)
            return 2
        print(f"case {hold.case}: hold cleared on {len(hold.blobs) - kept} blob(s); {kept} still held by other cases")
    elif args.case:
        print(await case_listing(edges.archive, edges.state, args.case, args.json))
    else:
        holds = await active_holds(edges.state)
        if args.json:
            print(to_json([h.model_dump(mode="json", by_alias=True) for h in holds]))
        for hold in holds if not args.json else []:
            since = f"{hold.placed_at:%Y-%m-%d %H:%M}Z"
            print(f"{hold.case}  since {since}  {len(hold.blobs)} blob(s)  {', '.join(hold.targets)}")
    return 0


def refusal(exc: HoldRefusedError) -> str:
    """Why the storage refused a legal hold, and what to do, in words."""
    if exc.status == 501 or exc.code == "NotImplemented":
        return (
            f"this storage does not implement legal holds ({exc}; Azurite implements none): run it against the "
            "deployed archive"
        )
    if exc.status in (401, 403):
        return f"the storage refused ({exc}): run it as an identity with Storage Blob Data Owner on the archive"
    return (
        f"the storage refused the legal hold ({exc}): the archive container needs version-level immutability "
        "(infra/ deploys it; docs/DEPLOY.md)"
    )
