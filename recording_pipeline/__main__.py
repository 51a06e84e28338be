"""Command line: ``python -m recording_pipeline {serve,replay,demo} ...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from .errors import ConfigurationError
from .settings import Settings
from .telemetry import configure_json_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recording_pipeline", description="Archive ACS call recordings into your own blob storage."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser("serve", help="run the webhook and the chunk workers locally (needs WEBHOOK_KEY)")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=7071)
    p_serve.add_argument("--workers", type=int, default=None, help="chunks archived at once (WORKER_CONCURRENCY)")

    p_replay = sub.add_parser("replay", help="feed saved or dead-lettered events through the webhook path")
    p_replay.add_argument("files", nargs="*", type=Path, help="Event Grid dead-letter blobs or saved deliveries")
    p_replay.add_argument("--poison", action="store_true", help="re-drive the jobs in <queue>-poison instead")

    p_demo = sub.add_parser("demo", help="Azurite + simulator + serve + a sample 3-chunk event, verified")
    p_demo.add_argument("--size-mib", type=int, default=24, help="size of the largest chunk")

    args = parser.parse_args(argv)
    configure_json_logging()
    try:
        if args.command == "demo":
            from .demo import run_demo

            return asyncio.run(run_demo(args.size_mib))
        settings = Settings.from_env()
        if args.command == "serve":
            from .serve import serve

            asyncio.run(serve(settings, args.host, args.port, args.workers))
            return 0
        if args.command == "replay":
            return asyncio.run(_replay(settings, args.files, args.poison))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 1


async def _replay(settings: Settings, files: list[Path], poison: bool) -> int:
    from .replay import replay_files, replay_poison
    from .runtime import Runtime

    if not files and not poison:
        print("replay: name files, or --poison", file=sys.stderr)
        return 2
    runtime = await Runtime.start(settings)
    try:
        if poison:
            redriven, kept = await replay_poison(runtime.queue)
            print(f"re-driven {redriven} job(s) from {runtime.queue.poison_name}; {kept} unreadable left in place")
            return 0 if not kept else 1

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
        return 0 if summary.ok else 1
    finally:
        await runtime.close()


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
