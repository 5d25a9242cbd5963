"""``python -m hyperlora_core``: see :mod:`hyperlora_core.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
