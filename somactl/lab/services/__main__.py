"""`python -m somactl.lab.services`: run the stand-ins until SIGTERM (see runner.py)."""

from __future__ import annotations

import sys

from somactl.lab.services.runner import main

if __name__ == "__main__":
    sys.exit(main())
