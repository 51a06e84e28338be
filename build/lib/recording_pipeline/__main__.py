"""``python -m recording_pipeline``: the command line (recording_pipeline.cli)."""

import sys

from recording_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
