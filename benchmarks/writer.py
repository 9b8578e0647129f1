"""An agent that writes N bytes to stdout as fast as it can, then reports how long that took.

Usage: ``python writer.py BYTES LINE_LENGTH REPORT.json``; ``LINE_LENGTH`` 0 writes one single
line of BYTES bytes (ended by a newline). The report holds the seconds from the first write to
the last one returning: with a pipe on stdout that is the reader's throughput.
"""

from __future__ import annotations

import json
import os
import sys
import time

_BLOCK = 1 << 20


def main() -> None:
    total, line_length, report = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if line_length > 0:
        line = b"x" * (line_length - 1) + b"\n"
        block = (line * (_BLOCK // line_length + 1))[:_BLOCK]
    else:
        block = b"y" * _BLOCK
    view = memoryview(block)
    left = total
    started = time.perf_counter()
    while left > 0:
        chunk = view[: min(left, _BLOCK)]
        if line_length <= 0 and left <= _BLOCK:
            chunk = memoryview(bytes(chunk[:-1]) + b"\n")
        while chunk:
            chunk = chunk[os.write(1, chunk) :]
        left -= min(left, _BLOCK)
    elapsed = time.perf_counter() - started
    with open(report, "w", encoding="utf-8") as out:
        json.dump({"bytes": total, "seconds": elapsed}, out)


if __name__ == "__main__":
    main()
