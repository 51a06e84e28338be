"""Rendering for the operator commands: aligned tables, JSON, and a progress bar
that draws only on a terminal (scripts and logs get none of its carriage returns)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

GAP = "  "
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2)


def format_bytes(count: int) -> str:
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float | None) -> str:
    """Time left: ``1d 02h``, ``23h 59m``, ``12m``, ``<1m``; ``expired`` once it is past."""
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "expired"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m" if minutes else "<1m"


def format_time(value: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SSZ`` (UTC); ``-`` if absent."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; columns in ``right`` right-aligned; no trailing spaces."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append(GAP.join(cells).rstrip())
    return "\n".join(lines)


# The columns of each command's table; the command's module fills in the rows.
STATUS_HEADERS = ("CALL ID", "RECORDING", "STATE", "CHUNKS", "SIZE", "TIME LEFT", "STARTED", "UPDATED", "NOTES")


PARTICIPANT_HEADERS = ("CALL ID", "RECORDING", "STATE", "STARTED", "CHUNKS", "SIZE", "LEGAL HOLD")


VERIFY_HEADERS = ("RESULT", "BLOB", "PROBLEM")


class ProgressBar:
    """``label [#####.....]  45%  1.2 GiB / 2.7 GiB  ETA 3m`` on one line, redrawn in place; silent off a TTY."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        width: int = 30,
        interval: float = 0.1,
        enabled: bool = True,
    ) -> None:
        """``enabled`` False (``--json``): never drawn, terminal or not."""
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.interval = interval
        self.enabled = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn_at: float | None = None
        self._started: tuple[float, int] | None = None  # (when, bytes done) at the first update: the rate's base
        self._last = ""

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._started is None:
            self._started = (now, done)
        if not self._due(done >= total, now):
            return
        fraction = 1.0 if total <= 0 else min(1.0, done / total)
        filled = int(self.width * fraction)
        self._draw(
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:3.0f}%  "
            f"{format_bytes(done)} / {format_bytes(total)}{self._eta(now, done, total)}"
        )

    def note(self, progress: str) -> None:
        """Progress without a known end, in words: ``label: 12345 blobs listed``."""
        if self.enabled and self._due(False, time.monotonic()):
            self._draw(f"{self.label}: {progress}")

    def _due(self, final: bool, now: float) -> bool:
        """Drawn at most every ``interval`` seconds, and always at the end."""
        if not final and self._drawn_at is not None and now - self._drawn_at < self.interval:
            return False
        self._drawn_at = now
        return True

    def _draw(self, line: str) -> None:
        self.stream.write("\r" + line.ljust(len(self._last)))
        self.stream.flush()
        self._last = line

    def _eta(self, now: float, done: int, total: int) -> str:
        """``  ETA 3m`` from the rate since the first update, once a second of it is known; nothing before."""
        assert self._started is not None
        since, at_start = self._started
        elapsed, moved = now - since, done - at_start
        if done >= total or elapsed < 1.0 or moved <= 0:
            return ""
        return f"  ETA {format_duration((total - done) * elapsed / moved)}"

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
