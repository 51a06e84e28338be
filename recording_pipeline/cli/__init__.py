"""Command line ``recording-archive`` (or ``python -m recording_pipeline``).

Each subcommand is its own module — ``status``, ``verify``, ``participant``,
``holds`` (hold), ``rebuild`` (rebuild-state), ``reindex``, ``export``, ``replay``, ``check``, ``fixity`` —
and its arguments are in ``arguments``. The local Functions host is not a command of the package:
it is ``python -m devtools.local_host``, from a checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from recording_pipeline.cli.arguments import parse_args
from recording_pipeline.cli.logs import configure_cli_logging, log_path
from recording_pipeline.core.errors import ConfigurationError, StorageError


def main(argv: list[str] | None = None) -> int:
    """The command's exit status: 0 done, 1 what it checks is wrong (verify, check, replay), 2 it could not run (an
    argument, a setting, the storage), each said in one line on stderr, without a traceback."""
    args = parse_args(argv)
    configure_cli_logging(verbose=args.verbose)
    try:
        if args.command == "check":
            from recording_pipeline.cli.check import main_check

            return main_check(args.json, args.app_root)
        return asyncio.run(_run(args))
    except ConfigurationError as exc:
        print(f"{args.command}: configuration error: {exc} (README, Configuration)", file=sys.stderr)
        return 2
    except StorageError as exc:  # the commands that name the account catch theirs first (cli/storage.operate)
        print(
            f"{args.command}: the storage could not be used: {exc}; check the storage settings and this machine's "
            f"access to the accounts; details in {log_path()}",
            file=sys.stderr,
        )
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
        case "fixity":
            from recording_pipeline.cli import fixity

            return await operate(args.command, lambda edges: fixity.run(edges, args))
    return 1


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
