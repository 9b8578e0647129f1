"""An agent that computes silently through short-lived children for argv[1] seconds, then exits 0.

Each child burns 0.1 s of CPU and exits; the agent itself only waits. A build running one short
compiler process after another looks like this.
"""

from __future__ import annotations

import subprocess
import sys
import time

BURN = "import time\nend = time.process_time() + 0.1\nwhile time.process_time() < end: pass\n"

sys.stdin.read()
end = time.monotonic() + float(sys.argv[1])
children = 0
while time.monotonic() < end:
    subprocess.run([sys.executable, "-c", BURN], check=True)
    children += 1
    time.sleep(0.2)
print(f"ran {children} children", flush=True)
