"""Entry point: `python cmd/altalune serve` (the installed `altalune` script calls the same main)."""

import sys

from internal.cli import main

if __name__ == "__main__":
    sys.exit(main())
