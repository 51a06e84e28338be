"""The progress bar's ETA (cli/output.ProgressBar): from the rate since the first update, once a second of it is
known; never at the start or the end, and never off a terminal."""

from __future__ import annotations

import pytest

from recording_pipeline.cli import output
from tests.support.terminal import Tty


def test_the_eta_follows_the_rate_since_the_first_update(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 100.5, 102.0, 130.0])
    monkeypatch.setattr("recording_pipeline.cli.output.time.monotonic", lambda: next(clock))
    tty = Tty()
    bar = output.ProgressBar("exporting", tty, width=4, interval=0)
    bar.update(0, 1000)  # t=100: no rate yet
    bar.update(100, 1000)  # t=100.5: under a second of it
    bar.update(200, 1000)  # t=102: 200 B in 2 s, 800 B left: 8 s
    bar.update(1000, 1000)  # the end: no ETA
    bar.close()
    lines = tty.getvalue().split("\r")[1:]
    assert [line.rstrip("\n").rstrip() for line in lines] == [
        "exporting [....]   0%  0 B / 1000 B",
        "exporting [....]  10%  100 B / 1000 B",
        "exporting [....]  20%  200 B / 1000 B  ETA <1m",
        "exporting [####] 100%  1000 B / 1000 B",
    ]


def test_a_long_wait_is_shown_in_minutes_and_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 60.0])
    monkeypatch.setattr("recording_pipeline.cli.output.time.monotonic", lambda: next(clock))
    tty = Tty()
    bar = output.ProgressBar("x", tty, width=2, interval=0)
    bar.update(0, 100 * 1024)
    bar.update(1024, 100 * 1024)  # 1 KiB a minute, 99 KiB left
    assert tty.getvalue().endswith("ETA 1h 39m")
