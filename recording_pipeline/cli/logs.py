"""Where the operator commands' log lines go: to a file, and to stderr only with ``--verbose``.

The lines are the edges' (a retry, a lease not renewed) and the SDKs' warnings: what an on-call engineer reads
after the fact. On a terminal they came between a command's own lines, a JSON object each (seven of them before
``check`` reported a dead ACS endpoint); a command now prints its result, or one line saying what went wrong and
what to do, and names this file for the rest. The file is ``$XDG_STATE_HOME/recording-archive/cli.log``
(``~/.local/state/...`` by default), kept to two of 5 MB.
"""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from recording_pipeline.edges.telemetry import ContextFilter, JsonLineFormatter

_OURS = "_recording_archive_cli"


def log_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "recording-archive" / "cli.log"


def configure_cli_logging(verbose: bool = False, level: int = logging.INFO) -> Path | None:
    """The root logger writes JSON lines to the log file (None if it cannot be written) and, ``verbose``, to
    stderr; what an earlier call installed is closed first."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    path: Path | None = log_path()
    try:
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(path, maxBytes=5 * 1024 * 1024, backupCount=1, encoding="utf-8"))
    except OSError:
        path = None  # a read-only home: the lines go nowhere unless asked for
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(JsonLineFormatter())
        handler.addFilter(ContextFilter())
        setattr(handler, _OURS, True)
    root.handlers[:] = handlers or [logging.NullHandler()]
    root.setLevel(level)
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
