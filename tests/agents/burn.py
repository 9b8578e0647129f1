"""An agent that computes silently for argv[1] seconds (one busy core), then says so and exits 0."""

from __future__ import annotations

import sys
import time

sys.stdin.read()
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    n += 1
print(f"computed {n} rounds", flush=True)
