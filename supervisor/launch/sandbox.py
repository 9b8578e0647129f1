"""OS confinement of an attempt: the bubblewrap argv that runs a command with the host read-only.

Owns ``SandboxPolicy`` (what is writable, read-only, hidden; network on or off), ``wrap`` (the
argv that runs a command under that policy) and ``sandbox_problem`` (why no sandbox can work
here). Nothing here starts a process except the one-off probe; the executor runs ``wrap(...)``
instead of the agent's argv, and runs pagent's own steps inside the attempt's files (auto-commit,
done marker, verify) the same way, since they execute what the agent wrote.

The argv, and why each part (measured with bubblewrap 0.8.0 on Linux 6.18, as root and as an
unprivileged user):

- ``--ro-bind / /`` then the policy's mounts in order of path depth, so that the most specific
  path decides: a workspace below a read-only repository is writable, a repository below a
  writable directory stays read-only (bwrap applies mounts in order, later ones on top). On one
  path the stricter mount wins. ``--tmpfs /tmp`` (a private /tmp) takes part in that order, so
  paths under /tmp that the policy names are mounted back on top of it.
- ``--unshare-user --unshare-pid --unshare-ipc`` always, ``--unshare-net`` without network.
- ``--cap-drop ALL``: as root, bwrap keeps every capability (also inside a new user namespace),
  and with CAP_SYS_ADMIN ``mount -o remount,rw /`` inside the sandbox makes the host writable.
- A pid namespace: the sandbox cannot see, signal or ptrace anything outside it (same-uid
  processes, the supervisor included, could otherwise be killed). From outside everything stays
  visible under its host pid: the tree (daemons are re-parented to the namespace's init, itself a
  child of bwrap, so they stay in the tree), the process group and session of bwrap, and
  ``PAGENT_COOKIE`` in ``/proc/PID/environ``. When the namespace's init dies, the kernel kills
  every process left in it, setsid daemons included.
- ``--die-with-parent``: bwrap asks for SIGKILL when its parent dies (replacing the SIGTERM a
  launcher's ``setpriv --pdeathsig`` set, which bwrap would ignore, see below), and so does the
  namespace's init: a dying supervisor takes the whole sandbox with it, daemons included. Like
  every parent-death signal it fires when the parent *thread* ends: start bwrap from a thread
  that lives as long as the supervisor.
- No ``--new-session``: it would put the command in a session and process group of its own, out
  of reach of the supervisor's group signal. The launcher already starts bwrap in a new session,
  so the command has no controlling terminal and TIOCSTI (the reason for the flag) cannot reach one.
- ``env --ignore-signal=TERM`` before bwrap, ``env --default-signal=TERM`` before the command:
  bwrap dies of SIGTERM without passing it on, and with ``--die-with-parent`` its death SIGKILLs the
  command at once, so a group SIGTERM would skip the agent's grace. Ignoring TERM in bwrap (the
  command gets its default action back) lets the agent handle SIGTERM and exit; bwrap then exits
  with its status. A command killed by a signal N shows as bwrap's exit code 128 + N.

What a sandboxed command can still do: read every file the user can read (except hidden paths
and the host's /tmp), use the network unless it is off, connect to Unix sockets on the host file
system (a read-only mount does not stop ``connect``: hide their directories, e.g. ``/run``), use
its API key, and burn CPU and memory.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import PagentError

_PROBE_TIMEOUT = 10.0  # seconds; a sandbox that takes longer than this to start is no sandbox
# Files a hidden directory may hold that programs need; mounted back read-only when they do.
_INSTALLATION = Path(__file__).resolve().parents[2]  # where the supervisor package is installed
_KEEP_VISIBLE = (Path("/etc/resolv.conf"),)


class SandboxError(PagentError):
    """A sandbox cannot be built as asked (bwrap missing, a hidden working directory...)."""


@dataclass(frozen=True)
class SandboxPolicy:
    """What an attempt's processes may touch. Paths are absolute; symlinks are resolved.

    ``writable``: directories (a missing one is created, empty, mode 0700, as the agent would
    create it itself on its first run) or existing files, e.g. the workspace and ``~/.claude``.
    ``writable_if_present``: files bound writable only if they exist, e.g. ``~/.claude.json``:
    creating an empty one would not be what the agent expects (Claude Code warns about an empty
    config), and a missing one cannot be made a directory.
    ``read_only``: paths kept read-only even below a writable path, and made visible again below
    a hidden one or the private /tmp: the main repository (its work tree and its git directory)
    belongs here. ``hidden``: directories covered by an empty tmpfs, e.g. ``/run`` (sockets).
    """

    writable: tuple[Path, ...]
    writable_if_present: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    network: bool = True
    private_tmp: bool = True


class _Kind(enum.IntEnum):
    # On one path, a higher kind is mounted later, on top: the stricter one wins.
    WRITABLE = 0
    READ_ONLY = 1
    HIDDEN = 2


@dataclass(frozen=True)
class _Mount:
    path: Path
    kind: _Kind

    def args(self) -> tuple[str, ...]:
        where = str(self.path)
        if self.kind is _Kind.WRITABLE:
            return ("--bind", where, where)
        if self.kind is _Kind.READ_ONLY:
            return ("--ro-bind", where, where)
        return ("--tmpfs", where)


def _tool(name: str, path: str | None = None) -> str:
    found = shutil.which(name, path=path)
    if found is None:
        raise SandboxError(f"sandbox: {name} is not installed (not found on PATH)")
    return found


def _program_paths(argv: Sequence[str], cwd: Path, path: str | None) -> list[Path]:
    """What ``argv`` needs in order to run at all, wherever it lives: this interpreter's
    prefixes (a virtualenv), pagent's own installation (a checkout), the program's directory and
    those of the files named on the command line (scripts and their siblings). Kept readable
    even when a hidden directory (the private ``/tmp``) would cover them."""
    found = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), _INSTALLATION}
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=path)
    named = [Path(program)] if program else []
    named += [Path(arg) for arg in argv[1:] if os.sep in arg]
    for name in named:
        file = name if name.is_absolute() else cwd / name
        with contextlib.suppress(OSError):
            if file.is_file():
                found |= {file.parent, file.resolve().parent}
    return sorted(found)


def _mounts(policy: SandboxPolicy, keep: Sequence[Path] = ()) -> list[_Mount]:
    """The policy's mounts, resolved, deduplicated, in the order bwrap must apply them; ``keep``
    are paths mounted back read-only where a hidden directory would cover them."""
    wanted: dict[Path, _Kind] = {}

    def add(path: Path, kind: _Kind) -> None:
        real = Path(os.path.realpath(path))
        wanted[real] = max(kind, wanted.get(real, kind))

    if policy.private_tmp:
        add(Path("/tmp"), _Kind.HIDDEN)  # noqa: S108 - the sandbox's own /tmp, not a file in the host's
    for path in policy.hidden:
        if path.is_dir():
            add(path, _Kind.HIDDEN)
    for path in policy.writable:
        if not path.exists():
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        add(path, _Kind.WRITABLE)
    for path in policy.writable_if_present:
        if path.exists():
            add(path, _Kind.WRITABLE)
    for path in policy.read_only:
        if path.exists():
            add(path, _Kind.READ_ONLY)
    for path in (*_KEEP_VISIBLE, *keep):
        real = Path(os.path.realpath(path))
        decides = _innermost(_in_order(wanted), real)
        if real.exists() and decides is not None and decides.kind is _Kind.HIDDEN:
            add(real, _Kind.READ_ONLY)
    return _in_order(wanted)


def _in_order(wanted: dict[Path, _Kind]) -> list[_Mount]:
    """Shallow paths first; on one path the stricter kind last (bwrap's later mounts win)."""
    mounts = (_Mount(path, kind) for path, kind in wanted.items())
    return sorted(mounts, key=lambda m: (len(m.path.parts), m.kind))


def _innermost(mounts: Sequence[_Mount], path: Path) -> _Mount | None:
    """The mount that decides what ``path`` is inside the sandbox (None: the read-only host)."""
    covering = [m for m in mounts if path == m.path or m.path in path.parents]
    return covering[-1] if covering else None


def wrap(
    argv: Sequence[str], policy: SandboxPolicy, cwd: Path, *, path: str | None = None
) -> tuple[str, ...]:
    """The argv that runs ``argv`` in ``cwd`` under ``policy`` (see the module docstring).

    Creates missing ``writable`` directories. ``SandboxError`` if a tool is missing, ``argv`` is
    empty or its program contains ``=`` (``env`` would take it for a variable), or ``cwd`` would be
    hidden inside the sandbox. ``path`` is the search path for ``bwrap`` and ``env`` (default PATH).
    """
    if not argv:
        raise SandboxError("sandbox: empty command")
    if "=" in argv[0]:
        raise SandboxError(f"sandbox: program name contains '=': {argv[0]!r}")
    for given in (*policy.writable, *policy.writable_if_present, *policy.read_only, *policy.hidden, cwd):
        if not given.is_absolute():
            raise SandboxError(f"sandbox: not an absolute path: {str(given)!r}")
    env, bwrap = _tool("env", path), _tool("bwrap", path)
    mounts = _mounts(policy, _program_paths(argv, cwd, path))
    inside = _innermost(mounts, Path(os.path.realpath(cwd)))
    if inside is not None and inside.kind is _Kind.HIDDEN:
        raise SandboxError(f"sandbox: working directory {str(cwd)!r} is hidden by {str(inside.path)!r}")
    namespaces = ["--unshare-user", "--unshare-pid", "--unshare-ipc"]
    if not policy.network:
        namespaces.append("--unshare-net")
    mount_args = [arg for mount in mounts for arg in mount.args()]
    return (
        env,
        "--ignore-signal=TERM",
        bwrap,
        *namespaces,
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        *mount_args,
        "--chdir",
        os.path.realpath(cwd),
        "--",
        env,
        "--default-signal=TERM",
        *argv,
    )


@functools.cache
def sandbox_problem(path: str | None = None) -> str | None:
    """Why a sandbox cannot work on this machine, in one line; ``None`` if it can.

    Runs ``true`` once under the strictest policy ``wrap`` builds (every namespace, no network),
    so a missing bwrap, namespaces the kernel or a security module refuses, or an ``env`` without
    ``--ignore-signal`` all show here, before a run. Cached per ``path`` (the search path).
    """
    if shutil.which("bwrap", path=path) is None:
        return "bubblewrap (bwrap) is not installed (Debian and Ubuntu: apt-get install bubblewrap)"
    root = Path("/")
    policy = SandboxPolicy(writable=(), network=False)
    try:
        argv = wrap(("true",), policy, root, path=path)
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except SandboxError as exc:
        return str(exc)
    except subprocess.TimeoutExpired:
        return f"bubblewrap did not start a sandbox within {_PROBE_TIMEOUT:.0f} s"
    except OSError as exc:
        return f"bubblewrap could not be run: {exc}"
    if done.returncode != 0:
        lines = (done.stderr.strip() or f"exit {done.returncode}").splitlines()
        return f"bubblewrap cannot create its sandbox here: {lines[-1]}"
    return None


def bwrap_version(path: str | None = None) -> str | None:
    """``bwrap --version`` ("bubblewrap 0.8.0"), or ``None`` if it cannot be run: for the records."""
    bwrap = shutil.which("bwrap", path=path)
    if bwrap is None:
        return None
    try:
        done = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
