"""Run the ``pagent`` CLI in this very process and record its own resource usage at exit.

Usage: ``python shim.py USAGE.json pagent-args...``. The JSON holds ``getrusage(RUSAGE_SELF)``
of the supervisor process alone -- user and system CPU seconds and peak RSS -- which excludes the
agents it started and reaped (those count under ``RUSAGE_CHILDREN``). Apart from that record it
is exactly what the ``pagent`` console script does.
"""

from __future__ import annotations

import atexit
import json
import resource
import sys
import time


def _dump(path: str, started: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(
            {
                "user": usage.ru_utime,
                "sys": usage.ru_stime,
                "maxrss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
                "inner_wall": time.monotonic() - started,
            },
            out,
        )


def main() -> None:
    path = sys.argv[1]
    sys.argv = ["pagent", *sys.argv[2:]]
    atexit.register(_dump, path, time.monotonic())
    from supervisor.ui.cli import main as pagent

    pagent()


if __name__ == "__main__":
    main()
