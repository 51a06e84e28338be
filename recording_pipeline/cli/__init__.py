"""Command line ``recording-archive`` (or ``python -m recording_pipeline``).

Each subcommand is its own module — ``status``, ``verify``, ``participant``,
``holds`` (hold), ``rebuild`` (rebuild-state), ``reindex``, ``export``, ``replay``, ``check`` — and its
arguments are in ``arguments``. The local Functions host is not a command of the package:
it is ``python -m devtools.local_host``, from a checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from recording_pipeline.cli.arguments import parse_args
from recording_pipeline.core.errors import ConfigurationError
from recording_pipeline.edges.telemetry import configure_json_logging


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_json_logging()
    try:
        if args.command == "check":
            from recording_pipeline.cli.check import main_check

            return main_check(args.json, args.app_root)
        return asyncio.run(_run(args))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace) -> int:
    """The subcommand's module, imported only when it runs."""
    from recording_pipeline.cli.storage import operate, queue_configured

    match args.command:
        case "replay":
            from recording_pipeline.cli import replay

            return await replay.run(args)
        case "status":
            from recording_pipeline.cli import status

            return await operate(args.command, lambda edges: status.run(edges, args), queue=queue_configured())
        case "verify":
            from recording_pipeline.cli import verify

            return await operate(args.command, lambda edges: verify.run(edges, args))
        case "participant":
            from recording_pipeline.cli import participant

            return await operate(args.command, lambda edges: participant.run(edges, args))
        case "rebuild-state":
            from recording_pipeline.cli import rebuild

            return await operate(args.command, lambda edges: rebuild.run(edges, args))
        case "export":
            from recording_pipeline.cli import export

            return await operate(args.command, lambda edges: export.run(edges, args))
        case "reindex":
            from recording_pipeline.cli import reindex

            return await operate(args.command, lambda edges: reindex.run(edges, args))
        case "hold":
            from recording_pipeline.cli import holds

            return await operate(args.command, lambda edges: holds.run(edges, args))
    return 1


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
