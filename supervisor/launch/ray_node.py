"""The program each attempt's Ray job runs on its node: ``python -m supervisor.launch.ray_node SPEC``.

``SPEC`` is ``node_spec.encode_spec``'s arguments, a path to a JSON file (``NodeSpec``), or
``--git URL REF SHA``: the spec as a blob on a git remote (one too large for a command line). The
program

1. forks a *worker* into a session of its own, which makes itself a child subreaper and asks
   for SIGTERM when this first process (the *shim*, left in Ray's process group) dies. The
   shim forwards SIGTERM/SIGINT/SIGHUP to the worker and, when its own parent dies, sends
   SIGTERM itself. Ray's head SIGKILLs the job's process group when it goes down; the worker,
   outside that group, sees its shim die and cleans up like after a stop;
2. takes the task's workspace lock, fetches into the node-local clone cached between attempts
   and checks out the task branch (``node_git.prepare``), which on the remote must be exactly
   where the spec says pagent put it (``expect_remote``);
3. writes the prompt to a file and runs the agent with it as stdin, in the workspace (or its
   ``workdir``), with the node's environment plus the spec's overlay and ``PAGENT_*``
   (``node_agent``). The agent's stdout goes straight to this program's stdout, which is the
   job log; its stderr in ERR records;
4. on the agent's exit, on SIGTERM (Ray's ``stop_job``) or when the shim dies, stops every
   remaining descendant, adopted orphans and setsid daemons included (``node_proc``), and says
   how the agent ended (EXIT);
5. then: the done marker (checked and removed), the auto-commit, the push of the branch and the
   attempt's pins (``refs/pagent/<run>/<task>/<attempt>``, ``-head`` for a HEAD elsewhere). The
   branch only moves forward, unless the spec says it is pagent's own (``force_push``: pagent put
   it there for this run, nobody else works on it), where an agent's rewritten history replaces
   it with ``--force-with-lease`` against the tip fetched at the start: never over someone
   else's push, and the commits replaced stay reachable through the previous attempt's pinned
   ref. The pins always land (and are kept in the node's clone too), so no commit of an attempt
   is ever unreachable;
6. prints ``PAGENT-RESULT[<nonce>] {json}`` as its last line, after a ``PAGENT-START`` record as
   its first and ``PAGENT-SAMPLE`` records every ``sample_interval`` seconds while the agent
   runs (``node_spec``).

Mode ``verify`` runs the task's verify command instead (steps 2 and 5 replaced by putting the
cached workspace at the commit that came home, keeping its ignored files when it is already
there); mode ``scratch`` runs a command in a fresh directory of its own, without git.

Exit code: the agent's (128 + N when a signal ended it), 2 for an unreadable spec, 3 when the
workspace could not be prepared (or the job started after ``not_after``), 70 for a bug. The
result record is the contract; the exit code a courtesy.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

from supervisor.launch import node_git
from supervisor.launch.node_spec import NodeSpec, SpecError, decode_spec, spec_from_json
from supervisor.launch.node_worker import STOP_SIGNALS, Worker

EXIT_SPEC = 2
EXIT_CRASH = 70  # EX_SOFTWARE: a bug in the node program (its result record says which)
FETCH_TIMEOUT = 300.0  # for a spec that travels through git


def _shim(spec: NodeSpec) -> int:
    """Fork the worker and stay in Ray's process group to pass signals on; the worker's code."""
    parent = os.getppid()
    sys.stdout.flush()
    sys.stderr.flush()
    shim = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker: whatever happens, this process ends here
        code = EXIT_CRASH
        try:
            worker = Worker(spec, shim)
            try:
                code = worker.run()
            except BaseException as error:  # the result record is promised: say what broke
                worker.crashed(error)
        finally:
            os._exit(code)

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    try:
        pidfd: int | None = os.pidfd_open(pid)  # readable when the worker ends: no delay at the end
    except OSError:  # Linux < 5.3
        pidfd = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if os.getppid() != parent:  # the entrypoint shell is gone: stop the attempt
            forward(signal.SIGTERM, None)
            parent = os.getppid()
        select.select([pidfd] if pidfd is not None else [], [], [], 0.5 if pidfd is not None else 0.1)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    """The command line: decode the spec (one line and exit 2 if it is bad), run the attempt."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["--git"] and len(args) == 4:  # a spec too large for a command line
            spec = spec_from_json(node_git.fetch_blob(args[1], args[2], args[3], FETCH_TIMEOUT))
        else:
            spec = decode_spec(args)
    except node_git.NodeGitError as error:
        print(f"pagent ray_node: cannot fetch the spec: {error}", file=sys.stderr)
        return EXIT_SPEC
    except SpecError as error:
        print(f"pagent ray_node: bad spec: {error}", file=sys.stderr)
        return EXIT_SPEC
    return _shim(spec)


if __name__ == "__main__":
    sys.exit(main())
