"""The parent-death signal as an argv prefix, probed once per process.

``setpriv_prefix()`` is util-linux ``setpriv --pdeathsig TERM --`` where it is installed and
shown (by its own ``--dump``) to do exactly that: it asks Linux to SIGTERM the process when its
parent dies, then execs the rest of the argv in the same process. The prefix costs the child one
more exec; the alternative, a ``preexec_fn`` calling ``prctl``, makes ``subprocess`` fork instead
of vfork (copying the supervisor's page tables and holding the event loop until the child has
exec'd) and is unsafe in worker threads.

Shared by the local launcher (``supervisor.launch.process``) and pagent's git runner
(``supervisor.workspace.gitproc``), which sit side by side and may not import each other.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys


@functools.cache
def setpriv_prefix() -> tuple[str, ...] | None:
    """``(setpriv, "--pdeathsig", "TERM", "--")``, or ``None`` where that cannot be had."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is None:
        return None
    prefix = (setpriv, "--pdeathsig", "TERM", "--")
    try:
        done = subprocess.run(
            [*prefix, setpriv, "--dump"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if done.returncode == 0 and b"Parent death signal: TERM" in done.stdout else None
