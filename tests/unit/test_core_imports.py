"""The core has no I/O imports: importing all of it loads no Azure SDK, aiohttp, JWT, tenacity or telemetry."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import recording_pipeline.core
from tests.support.stack import REPO

FORBIDDEN = ("azure", "aiohttp", "jwt", "tenacity", "opentelemetry", "requests", "urllib3")


def test_importing_the_core_loads_no_io_library() -> None:
    modules = [f"recording_pipeline.core.{m.name}" for m in pkgutil.iter_modules(recording_pipeline.core.__path__)]
    assert {
        "recording_pipeline.core.events",
        "recording_pipeline.core.lifecycle",
        "recording_pipeline.core.state",
    } <= set(modules)
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
