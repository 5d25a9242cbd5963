"""``python -m hyperlora_core.bench``: see :mod:`hyperlora_core.bench.run`."""

import sys

from .run import main

if __name__ == "__main__":
    sys.exit(main())
