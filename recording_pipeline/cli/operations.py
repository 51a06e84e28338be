"""The names status, verify and participant had when they shared this module, for the code that still imports them
from here (devtools/demo.py, tests/e2e/test_operations_cli.py); each command is in its own module now."""

from recording_pipeline.cli.status import STATE_FILTERS
from recording_pipeline.cli.verify import verify_recordings

__all__ = ["STATE_FILTERS", "verify_recordings"]
