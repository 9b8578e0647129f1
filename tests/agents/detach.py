"""An agent that leaves a daemon behind holding its stdout open, then exits 0.

argv: PIDFILE [--no-cookie] [--same-session] [--exit-stamp FILE]. The daemon (see ``_daemon``)
double-forks into its own session and ignores SIGTERM; with ``--same-session`` it only moves to a
process group of its own, with ``--no-cookie`` it drops every PAGENT_* variable.
``--exit-stamp`` receives the wall-clock time just before this agent exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _daemon import spawn, write_atomic

parser = argparse.ArgumentParser()
parser.add_argument("pidfile", type=Path)
parser.add_argument("--no-cookie", action="store_true")
parser.add_argument("--same-session", action="store_true")
parser.add_argument("--exit-stamp", type=Path)
args = parser.parse_args()

sys.stdin.read()
spawn(args.pidfile, keep_cookie=not args.no_cookie, new_session=not args.same_session)
print("done; my daemon keeps stdout open", flush=True)
if args.exit_stamp is not None:
    write_atomic(args.exit_stamp, repr(time.time()))
