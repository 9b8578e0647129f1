"""A hung agent: reads the prompt, writes its pid to argv[1], then says nothing and uses no CPU."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from _daemon import write_atomic

sys.stdin.read()
write_atomic(Path(sys.argv[1]), str(os.getpid()))
while True:
    signal.pause()
