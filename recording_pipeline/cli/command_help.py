"""How a command of ``recording-archive`` is declared, so that every ``--help`` says the same things the same way:
a one-line summary, a description, and as its epilog the settings (environment variables) it reads and what its
exit statuses mean; and the types its dates are read with. cli/arguments.py declares the commands with these."""

from __future__ import annotations

import argparse
import textwrap
from datetime import datetime, timedelta

from recording_pipeline.cli.status import as_utc

ARCHIVE = (
    "ARCHIVE_STORAGE_CONNECTION_STRING (or ARCHIVE_STORAGE_ACCOUNT_URL, signed in with az login or a managed "
    "identity), ARCHIVE_CONTAINER, ARCHIVE_STATE_CONTAINER"
)
QUEUE = "AzureWebJobsStorage (or AzureWebJobsStorage__accountName), CHUNK_QUEUE_NAME"
COULD_NOT_RUN = "2 it could not run (an argument, a setting, the storage), said in one line"


def _epilog(reads: str, failed: str | None) -> str:
    status = f"exit status: 0 done; {f'1 {failed}; ' if failed else ''}{COULD_NOT_RUN}"
    return "\n".join(textwrap.fill(text, 100, subsequent_indent="  ") for text in (f"reads: {reads}", status))


def add_command(
    parsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    reads: str,
    failed: str | None,
    parents: list[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """A (sub)command: its one-line summary, its description, and what it reads and how it exits as its epilog."""
    return parsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_epilog(reads, failed),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=parents,
    )


def parse_date(value: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None


def until_date(value: str) -> datetime:
    """An upper bound: a time is exclusive; a date alone takes in the whole of that day (UTC)."""
    parsed = parse_date(value)
    return parsed + timedelta(days=1) if len(value.strip()) == len("YYYY-MM-DD") else parsed
