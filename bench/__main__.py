"""`python -m bench`: every bench case in one run (see bench/run_all.py); `--quick` for CI."""

from __future__ import annotations

import sys

from bench.run_all import main

sys.exit(main())
