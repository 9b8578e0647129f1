"""An agent that ignores SIGTERM, and so does its child; it prints a tick every half second.

argv[1] receives "<pid> <child pid>". Only SIGKILL ends it; the ticks keep it out of the stall
verdict so that only the wall-clock timeout can stop it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _daemon import write_atomic

sys.stdin.read()
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child through fork and exec
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
write_atomic(Path(sys.argv[1]), f"{os.getpid()} {child.pid}")
n = 0
while True:
    n += 1
    print(f"tick {n}", flush=True)
    time.sleep(0.5)
