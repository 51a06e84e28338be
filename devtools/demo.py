"""The local demo: Azurite + the recording simulator + the local Functions host +
one sample 3-chunk recording event, ending with a verified archive and
``recording-archive check`` against the local stack.

Exits 0 only when every chunk's media in Azurite hashes to what the simulator
served and to its chain-of-custody record, the manifest says ``complete``, each
chunk was deleted from the simulator after it was archived, ``verify`` finds
nothing wrong, ``check`` finds no FAIL, and the write-once guard finds no
request that changed or deleted a blob of the archive container.

With ``--keep`` (``make demo KEEP=1``) the stack keeps running until Ctrl-C: the
settings the CLI needs are written to ``.demo/env.sh`` (``source`` it), and the
blob URLs printed carry a read-only SAS, so a browser can open them meanwhile.
Each run starts from an empty ``.demo/azurite``: earlier runs' data does not pile up.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import aiohttp
from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import REPO, Azurite, ServeProcess
from devtools.simulator import RecordingSimulator
from devtools.write_once import Guard, check_log
from recording_pipeline.cli.check import check
from recording_pipeline.cli.verify import verify_recordings
from recording_pipeline.core.custody import CustodyRecord
from recording_pipeline.core.naming import chunk_stem, custody_name, manifest_name, recording_key
from recording_pipeline.core.state import Manifest, RecordingState
from recording_pipeline.edges.archive import BlobArchive

CLI_SETTINGS = (
    "ACS_CONNECTION_STRING",
    "ARCHIVE_STORAGE_CONNECTION_STRING",
    "AzureWebJobsStorage",
    "ARCHIVE_CONTAINER",
    "ARCHIVE_STATE_CONTAINER",
    "CHUNK_QUEUE_NAME",
    "RECORDING_ALLOWED_HOSTS",
    "RECORDING_ALLOW_HTTP",
)


def fresh_run_dir(workdir: Path) -> Path:
    """An empty ``workdir/azurite`` for this run's data; what earlier runs left there (and the ``azurite-<time>``
    folders older demos made, ~28 MB each) is removed."""
    workdir.mkdir(parents=True, exist_ok=True)
    for old in [workdir / "azurite", *workdir.glob("azurite-*")]:
        shutil.rmtree(old, ignore_errors=True)
    return workdir / "azurite"


def read_url(azurite: Azurite, container: str, blob: str, hours: int = 24) -> str:
    """The blob's URL with a read-only SAS, signed with Azurite's well-known account key: a browser opens it."""
    parts = dict(p.split("=", 1) for p in azurite.connection_string.split(";") if "=" in p)
    sas = generate_blob_sas(
        parts["AccountName"],
        container,
        blob,
        account_key=parts["AccountKey"],
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=hours),
    )
    return f"{parts['BlobEndpoint'].rstrip('/')}/{container}/{quote(blob)}?{sas}"


def write_env(path: Path, env: dict[str, str]) -> Path:
    """The settings the operator commands need, as ``export`` lines to ``source``."""
    lines = [f"export {name}={shlex.quote(env[name])}" for name in CLI_SETTINGS]
    path.write_text(
        "# the demo's local stack, while it runs: source this, then run recording-archive\n" + "\n".join(lines) + "\n"
    )
    return path


async def run_demo(size_mib: int = 24, timeout: float = 300.0, keep: bool = False, workdir: Path | None = None) -> int:
    workdir = workdir or REPO / ".demo"
    location = fresh_run_dir(workdir)
    # Both starts wait for a port: keep that off the event loop.
    azurite = await asyncio.to_thread(Azurite(location=location, access_log=True).start)  # the guard reads its log
    simulator = RecordingSimulator()
    await simulator.start()
    key = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "ACS_CONNECTION_STRING": simulator.connection_string,
        "ARCHIVE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "ARCHIVE_CONTAINER": "recordings",
        "ARCHIVE_STATE_CONTAINER": "recordings-state",
        "CHUNK_QUEUE_NAME": "recording-chunks",
        "RECORDING_ALLOWED_HOSTS": "127.0.0.1",
        "RECORDING_ALLOW_HTTP": "true",
        "WEBHOOK_KEY": key,
    }
    server = await asyncio.to_thread(ServeProcess(env, workdir / "serve.log").start)
    try:
        call_id = "11111111-2222-3333-4444-555555555555"
        recording_id = "eyJQbGF0Zm9ybUVuZHBvaW50SWQiOiJkZW1vIn0"
        chunks = [
            simulator.add(
                "0-eus-d1-demo00000000000000000000000000", size_mib * 1024 * 1024, "mp4", chunk_index=0, call_id=call_id
            ),
            simulator.add(
                "0-eus-d1-demo00000000000000000000000001",
                3 * 1024 * 1024 + 12345,
                "mp4",
                chunk_index=1,
                call_id=call_id,
            ),
            simulator.add(
                "0-eus-d1-demo00000000000000000000000002", 512 * 1024 + 7, "mp4", chunk_index=2, call_id=call_id
            ),
        ]
        event = simulator.event(call_id, recording_id, chunks)
        print(
            f"demo: posting a RecordingFileStatusUpdated event with {len(chunks)} chunks "
            f"({sum(c.size for c in chunks) / 2**20:.1f} MiB) to http://127.0.0.1:{server.port}/api/recording-events"
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{server.port}/api/recording-events", json=[event], headers={"x-functions-key": key}
            ) as response,
        ):
            print(f"demo: webhook answered {response.status} {await response.text()}")
            if response.status != 200:
                return 1
        rec_key = recording_key(recording_id, None)
        archive = BlobArchive(BlobServiceClient.from_connection_string(azurite.connection_string), "recordings")
        state = BlobArchive(BlobServiceClient.from_connection_string(azurite.connection_string), "recordings-state")
        try:
            manifest = await _wait_for_complete(state, manifest_name(call_id, rec_key), timeout)
            if manifest is None:
                print(f"demo: FAILED: the recording did not complete in time; see {workdir / 'serve.log'}")
                return 1
            ok = True
            for chunk in chunks:
                entry = manifest.chunk(chunk.chunk_index)
                assert entry is not None and entry.media_blob is not None
                media, _size = await archive.sha256(entry.media_blob)
                found = await archive.read_bytes(
                    custody_name(chunk_stem(call_id, rec_key, chunk.chunk_index, chunk.document_id))
                )
                proof = CustodyRecord.model_validate_json(found[0]) if found else None
                deleted = chunk.document_id in simulator.deleted
                good = proof is not None and media == chunk.sha256 == entry.sha256 == proof.sha256 and deleted
                ok &= good
                print(
                    f"demo: {'ok ' if good else 'BAD'} {read_url(azurite, 'recordings', entry.media_blob)} "
                    f"({entry.size} bytes, sha256 {media[:16]}…, chain of custody: {'yes' if proof else 'NO'}, "
                    f"deleted from ACS: {deleted})"
                )
            manifest_url = read_url(azurite, "recordings-state", manifest_name(call_id, rec_key))
            print(f"demo: manifest {manifest_url} state={manifest.state.value}")
            checks = await verify_recordings(archive, state)
            verified = all(c.ok for c in checks)
            print(
                f"demo: recording-archive verify: {'every chunk matches its custody record' if verified else 'FAILED'}"
            )
            ok &= verified
            # The deployment proving itself, as after azd up: on Azurite the WORM lines say they cannot be shown.
            print("demo: recording-archive check:")
            checked = await check(env, REPO)
            ok &= checked == 0
        finally:
            await archive.close()
            await state.close()
        if keep:
            await _keep_running(write_env(workdir / "env.sh", env), server.url, key)
    finally:
        server.stop()
        await simulator.stop()
        azurite.stop()
    assert azurite.log_path is not None
    guard = check_log(azurite.log_path, Guard(is_archive=lambda container: container == "recordings"))
    print(f"demo: {guard.report()}")
    ok &= not guard.violations and guard.checked > 0
    print("demo: archive verified" if ok else "demo: FAILED verification")
    return 0 if ok else 1


async def _keep_running(env_file: Path, webhook: str, key: str) -> None:
    """Until Ctrl-C (SIGINT) or SIGTERM: the stack stays up, and what to point at it is said."""
    print(
        "demo: the stack keeps running until Ctrl-C; the URLs above open in a browser meanwhile. In another shell:\n"
        f"demo:   source {env_file}\n"
        "demo:   .venv/bin/recording-archive status      # or verify, participant, fixity run, check, hold list\n"
        f"demo:   webhook {webhook} (header x-functions-key: {key})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("demo: stopping the stack", flush=True)


async def _wait_for_complete(state: BlobArchive, name: str, timeout: float) -> Manifest | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await state.read_json(name)
        manifest = Manifest.from_json(found[0]) if found else None
        complete = manifest is not None and manifest.state is RecordingState.COMPLETE
        if manifest and complete and all(c.source_deleted_at for c in manifest.chunks.values()):
            return manifest
        await asyncio.sleep(0.5)
    return None


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m devtools.demo",
        description="Azurite + simulator + local host + a 3-chunk event, verified, then check",
    )
    parser.add_argument("--size-mib", type=int, default=24, help="size of the largest chunk")
    parser.add_argument("--keep", action="store_true", help="keep the stack running until Ctrl-C (make demo KEEP=1)")
    parser.add_argument("--workdir", type=Path, default=REPO / ".demo", help="where its data and logs go")
    args = parser.parse_args()
    return asyncio.run(run_demo(args.size_mib, keep=args.keep, workdir=args.workdir))


if __name__ == "__main__":
    raise SystemExit(main())
