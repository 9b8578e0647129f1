"""An agent stuck on a dead connection: silent, waking every 0.1 s to burn argv[1] percent of a
core in tiny bursts (the real Claude CLI in this state uses about 0.4%)."""

from __future__ import annotations

import sys
import time

sys.stdin.read()
burst = 0.1 * float(sys.argv[1]) / 100
while True:
    end = time.process_time() + burst
    while time.process_time() < end:
        pass
    time.sleep(0.1)
