"""A stream that says it is a terminal: what the operator commands' progress bars draw on (cli/output.ProgressBar
draws only on one)."""

from __future__ import annotations

import io


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True
