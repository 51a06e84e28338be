"""The local demo: Azurite + the recording simulator + ``serve`` + one sample
3-chunk recording event, ending with a verified archive.

Exits 0 only when every chunk's media and metadata in Azurite hash to what the
simulator served, the manifest says ``complete``, and each chunk was deleted
from the simulator after it was archived.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from pathlib import Path

import aiohttp
from azure.storage.blob.aio import BlobServiceClient

from devtools.devstack import REPO, Azurite, ServeProcess
from devtools.simulator import RecordingSimulator
from recording_pipeline.core.naming import manifest_name, recording_key
from recording_pipeline.core.state import chunk_key


async def run_demo(size_mib: int = 24, timeout: float = 300.0) -> int:
    workdir = REPO / ".demo"
    workdir.mkdir(exist_ok=True)
    # Both starts wait for a port: keep that off the event loop.
    azurite = await asyncio.to_thread(Azurite(location=Path(workdir / f"azurite-{int(time.time())}")).start)
    simulator = RecordingSimulator()
    await simulator.start()
    key = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "ACS_CONNECTION_STRING": simulator.connection_string,
        "ARCHIVE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "ARCHIVE_CONTAINER": "recordings",
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
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        async with service:
            container = service.get_container_client("recordings")
            manifest = await _wait_for_complete(container, manifest_name(call_id, rec_key), timeout)
            if manifest is None:
                print("demo: FAILED: the recording did not complete in time; see .demo/serve.log")
                return 1
            ok = True
            for chunk in chunks:
                entry = manifest["chunks"][chunk_key(chunk.chunk_index)]
                media = await _sha256(container, entry["mediaBlob"])
                good = media == chunk.sha256 == entry["sha256"] and chunk.document_id in simulator.deleted
                ok &= good
                print(
                    f"demo: {'ok ' if good else 'BAD'} {container.url}/{entry['mediaBlob']} "
                    f"({entry['size']} bytes, sha256 {media[:16]}…, deleted from ACS: "
                    f"{chunk.document_id in simulator.deleted})"
                )
            print(f"demo: manifest {container.url}/{manifest_name(call_id, rec_key)} state={manifest['state']}")
            print("demo: archive verified" if ok else "demo: FAILED verification")
            return 0 if ok else 1
    finally:
        server.stop()
        await simulator.stop()
        azurite.stop()


async def _wait_for_complete(container: object, name: str, timeout: float) -> dict | None:  # type: ignore[type-arg]
    import json

    from azure.core.exceptions import ResourceNotFoundError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = await (await container.get_blob_client(name).download_blob()).readall()  # type: ignore[attr-defined]
            manifest = json.loads(body)
            if manifest.get("state") == "complete" and all(
                c.get("sourceDeletedAt") for c in manifest.get("chunks", {}).values()
            ):
                return manifest  # type: ignore[no-any-return]
        except ResourceNotFoundError:
            pass
        await asyncio.sleep(0.5)
    return None


async def _sha256(container: object, name: str) -> str:
    hasher = hashlib.sha256()
    downloader = await container.get_blob_client(name).download_blob()  # type: ignore[attr-defined]
    async for piece in downloader.chunks():
        hasher.update(piece)
    return hasher.hexdigest()


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m devtools.demo", description="Azurite + simulator + serve + a sample 3-chunk event, verified"
    )
    parser.add_argument("--size-mib", type=int, default=24, help="size of the largest chunk")
    return asyncio.run(run_demo(parser.parse_args().size_mib))


if __name__ == "__main__":
    raise SystemExit(main())
