"""Feed stored payloads through the webhook path again, or re-drive poison jobs.

Accepts what an operator actually has at hand: an Event Grid dead-letter blob
(a JSON array of events with extra dead-letter fields), a saved delivery in
either schema (array or single event), or JSON lines; or reads the dead-letter
container itself (``--deadletter``, app.deadletter: every blob not redriven yet,
with a record of what became of it written beside it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recording_pipeline.app.deadletter import as_delivery, is_redrive_record, redrive_dead_letters, webhook_path
from recording_pipeline.app.webhook import WebhookRequest
from recording_pipeline.cli.storage import OPERATOR_LIMITS, operator_edges
from recording_pipeline.core.errors import ContainerNotFoundError
from recording_pipeline.core.jobs import decode_job
from recording_pipeline.core.naming import QUARANTINE_PREFIX
from recording_pipeline.core.ports import ChunkQueue, StateStore
from recording_pipeline.core.quarantine import job_text_of
from recording_pipeline.core.settings import Settings
from recording_pipeline.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class ReplaySummary:
    files: int = 0
    enqueued: int = 0
    ignored: int = 0
    external: int = 0
    rejected: list[str] = field(default_factory=list)
    failed_files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # the dead-letter redrive's own records, downloaded with the blobs

    @property
    def ok(self) -> bool:
        return not self.failed_files


def load_payload(path: Path) -> tuple[bytes, str]:
    """The file as one delivery body and its content type."""
    return as_delivery(path.read_text(encoding="utf-8"))


async def replay_files(
    runtime: Runtime, paths: list[Path], progress: Callable[[int, int, str], None] | None = None
) -> ReplaySummary:
    summary = ReplaySummary()
    deliver = webhook_path(runtime.webhook, runtime.queue, runtime.audit)
    for number, path in enumerate(paths, 1):
        if is_redrive_record(path.name):
            summary.skipped.append(str(path))
            continue
        summary.files += 1
        try:
            body, content_type = load_payload(path)
        except (OSError, ValueError) as exc:
            summary.failed_files.append(f"{path}: cannot read: {exc}")
            continue
        response = await deliver(WebhookRequest("POST", {"content-type": content_type}, body))
        result = response.body or {}
        summary.enqueued += int(result.get("enqueued", 0))
        summary.ignored += int(result.get("ignored", 0))
        summary.external += int(result.get("external", 0))
        summary.rejected.extend(f"{path}: {r}" for r in result.get("rejected", []))
        if response.status >= 500 or (response.status >= 400 and not result.get("rejected")):
            summary.failed_files.append(f"{path}: {response.status} {result.get('error', '')}")
        if progress:
            progress(number, len(paths), str(path))
    return summary


async def replay_poison(queue: ChunkQueue, state: StateStore, limit: int = 10_000) -> tuple[int, int]:
    """Put quarantined jobs back on the chunk queue: the state container's ``_quarantine/`` records, then the poison
    queue's messages (the worker writes both; the host's own poisoning only the latter). A job found in both is
    sent once. Returns (re-driven, unreadable kept in place)."""
    sent: set[str] = set()
    redriven = kept = 0

    async def redrive(content: str | bytes, where: str) -> bool:
        nonlocal redriven, kept
        job_text = job_text_of(content)
        if job_text is None:
            kept += 1
            log.warning("%s is not a job; left in place", where)
            return False
        if job_text not in sent:
            await queue.enqueue([decode_job(job_text)])
            sent.add(job_text)
            redriven += 1
        return True

    try:
        records = [name async for name in state.list_names(QUARANTINE_PREFIX)]
    except ContainerNotFoundError:  # no archive yet: nothing was ever quarantined there
        records = []
    for name in records[:limit]:
        found = await state.read_bytes(name)
        if found is not None and await redrive(found[0], name):
            await state.delete(name)
    async for message in queue.poison_messages(limit):
        if await redrive(message.content, f"a message of {queue.poison_name}"):
            await message.remove()
    return redriven, kept


async def run(args: argparse.Namespace) -> int:
    files: list[Path] = args.files
    poison: bool = args.poison
    if not files and not poison and not args.deadletter:
        print("replay: name files, or --poison, or --deadletter", file=sys.stderr)
        return 2
    if poison:  # needs the queue and the state container only
        async with operator_edges(queue=True) as edges:
            assert edges.queue is not None
            await edges.queue.ensure()
            redriven, kept = await replay_poison(edges.queue, edges.state)
            print(
                f"re-driven {redriven} job(s) from {edges.queue.poison_name} and _quarantine/; "
                f"{kept} unreadable left in place"
            )
            return 0 if not kept else 1
    runtime = await Runtime.start(Settings.from_env(), storage_options=OPERATOR_LIMITS)
    try:
        if args.deadletter:
            return await replay_dead_letters(runtime)

        def progress(done: int, total: int, name: str) -> None:
            print(f"\r[{done}/{total}] {name[-60:]:<60}", end="", file=sys.stderr, flush=True)

        summary = await replay_files(runtime, files, progress if sys.stderr.isatty() else None)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(
            f"files: {summary.files}  enqueued: {summary.enqueued}  ignored: {summary.ignored}  "
            f"external: {summary.external}  rejected: {len(summary.rejected)}  failed: {len(summary.failed_files)}"
        )
        for line in summary.rejected + summary.failed_files:
            print(f"  {line}")
        if summary.skipped:
            print(
                f"  skipped {len(summary.skipped)} record(s) of the dead-letter redrive "
                "(*.redriven.json, *.failed-NN.json)"
            )
        return 0 if summary.ok else 1
    finally:
        await runtime.close()


async def replay_dead_letters(runtime: Runtime) -> int:
    """Every blob of the dead-letter container not redriven yet, through the webhook path, whatever its failed
    tries; what became of each is recorded beside it (app.deadletter). Exit 1 if any could not be redriven."""
    assert runtime.deadletter is not None
    deliver = webhook_path(runtime.webhook, runtime.queue, runtime.audit)
    report = await redrive_dead_letters(runtime.deadletter, deliver, "replay")
    print(
        f"dead-letter container {runtime.settings.deadletter.container}: redriven: {len(report.redriven)}  "
        f"enqueued: {report.enqueued}  refused again: {len(report.refused)}  failed: {len(report.failed)}  "
        f"waiting: {report.waiting}"
    )
    for line in [f"refused again: {name}" for name in report.refused] + [f"failed: {n}" for n in report.failed]:
        print(f"  {line}")
    for reason in report.rejected:
        print(f"  rejected: {reason}")
    return 1 if report.failed else 0
