"""An agent that reports how it was started, then waits until a flag file exists and exits 0.

argv: REPORT FLAG. REPORT receives JSON: its pid, session and process group, the parent-death
signal it runs with, its PAGENT_COOKIE and the pid of a child it started (which inherits all of it).
While it waits it prints a line every 0.2 s, so that it is never stalled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _daemon import write_atomic

PR_GET_PDEATHSIG = 2

sys.stdin.read()
report, flag = Path(sys.argv[1]), Path(sys.argv[2])
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
pdeathsig = ctypes.c_int(0)
libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(pdeathsig), 0, 0, 0)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
facts = {
    "pid": os.getpid(),
    "sid": os.getsid(0),
    "pgid": os.getpgid(0),
    "pdeathsig": pdeathsig.value,
    "cookie": os.environ.get("PAGENT_COOKIE"),
    "child": child.pid,
}
write_atomic(report, json.dumps(facts))
while not flag.exists():
    print("waiting", flush=True)
    time.sleep(0.2)
child.terminate()
child.wait()
print("reported", flush=True)
