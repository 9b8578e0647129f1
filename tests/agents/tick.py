"""An agent that prints a line every argv[2] seconds for argv[1] seconds, idle in between."""

from __future__ import annotations

import sys
import time

sys.stdin.read()
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    n += 1
    print(f"tick {n}", flush=True)
    time.sleep(float(sys.argv[2]))
print("done", flush=True)
