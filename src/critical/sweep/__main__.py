"""``python -m critical.sweep SPEC ...``: the same as ``critical sweep SPEC ...``."""

import sys

from critical.sweep.runner import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
