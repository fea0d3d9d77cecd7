"""``python -m critical.report RUNS_DIR ...``: the same as ``critical report RUNS_DIR ...``."""

import sys

from critical.report.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
