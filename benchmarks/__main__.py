"""``python -m benchmarks``: run the whole suite (see ``benchmarks/run.py``)."""

from __future__ import annotations

from benchmarks.run import main

raise SystemExit(main())
