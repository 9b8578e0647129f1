"""An agent that replays a recorded Claude stream-json transcript at full speed, to N bytes.

Usage: ``python replay.py TRANSCRIPT.jsonl BYTES [claude's flags...]`` (the flags are ignored).
It prints the transcript's first line (``system/init``), then its middle lines (the events of
the turns: assistant messages, tool results) over and over in 1 MiB writes of whole lines until
about BYTES bytes are out, then the transcript's last line (the ``result``), and exits 0: a very
chatty session, as fast as the supervisor reads it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_BLOCK = 1 << 20


def main() -> None:
    lines = Path(sys.argv[1]).read_bytes().splitlines(keepends=True)
    total = int(sys.argv[2])
    first, middle, last = lines[0], b"".join(lines[1:-1]), lines[-1]
    block = middle * max(1, _BLOCK // len(middle))
    sys.stdin.buffer.read()  # the prompt, to its end
    out = first
    written = 0
    while written < total:
        chunk = block if total - written >= len(block) else middle * max(1, (total - written) // len(middle))
        out += chunk
        view = memoryview(out)
        while view:
            view = view[os.write(1, view) :]
        written += len(out)
        out = b""
    view = memoryview(last)
    while view:
        view = view[os.write(1, view) :]


if __name__ == "__main__":
    main()
