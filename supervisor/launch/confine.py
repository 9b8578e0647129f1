"""From the seam's ``Confinement`` to the bubblewrap policy of one local attempt.

The engine describes what an attempt may write besides its workspace (``supervisor.seam.
Confinement``: the agent kind's state paths and the plan's ``sandbox_writable``, written as
``~/.claude/`` or ``${CODEX_HOME:-~/.codex}/``); here, where the attempt runs, those are
expanded with the attempt's own environment and joined with what the workspace needs:

- writable: the task's workspace (its clone), and the expanded paths -- a directory (trailing
  ``/``) is made if missing, a file is bound only if it exists;
- read-only even below a writable path: the plan's repository (its work tree and its git
  directory) and the confinement's ``read_only`` paths (the plan's folder: the agent's own
  scripts may live there, and a private ``/tmp`` would hide a plan kept under ``/tmp``);
- hidden: ``/run``, where the host's daemons keep their Unix sockets (a read-only mount does not
  stop ``connect``);
- the network as the confinement says.

Under bubblewrap a command killed by signal N exits 128 + N (bwrap reports it so): the launcher
reads such a code back as the signal (``LocalLauncher.start(signal_codes=True)``), so that
reasons and the OOM check read the same with and without the sandbox.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from supervisor.launch.sandbox import SandboxPolicy, wrap
from supervisor.seam import Confinement, Workspace

HIDDEN = (Path("/run"),)
_VARIABLE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<fallback>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def expand(entry: str, env: Mapping[str, str]) -> Path | None:
    """``entry`` (``~/x``, ``${VAR:-~/y}/z``, ``/abs``) as an absolute path in ``env``; ``None``
    when it names a variable that is not set (and has no fallback) or is not absolute then."""
    missing = False

    def variable(match: re.Match[str]) -> str:
        nonlocal missing
        name = match["name"] or match["bare"]
        value = env.get(name)
        if value:
            return value
        if match["fallback"] is not None:
            return match["fallback"]
        missing = True
        return ""

    text = _VARIABLE.sub(variable, entry)
    if missing:
        return None
    if text == "~" or text.startswith("~/"):
        home = env.get("HOME")
        if not home:
            return None
        text = home + text[1:]
    path = Path(text)
    return path if path.is_absolute() else None


def policy_for(
    confinement: Confinement,
    workspace: Workspace | None,
    env: Mapping[str, str],
    own: Sequence[Path] = (),
) -> SandboxPolicy:
    """The bubblewrap policy of an attempt in ``workspace`` with environment ``env`` (see the
    module docstring); ``own`` are directories the executor made for the attempt (its attempt
    directory, its agent's kept home), writable too."""
    writable: list[Path] = list(own)
    files: list[Path] = []
    for entry in confinement.writable:
        path = expand(entry, env)
        if path is None:
            continue
        (writable if entry.endswith("/") else files).append(path)
    read_only = list(confinement.read_only)
    if workspace is not None:
        writable.insert(0, workspace.path)
        if workspace.repo is not None:
            read_only += [workspace.repo, *_git_dirs(workspace.repo)]
    return SandboxPolicy(
        writable=tuple(writable),
        writable_if_present=tuple(files),
        read_only=tuple(read_only),
        hidden=HIDDEN,
        network=confinement.network,
    )


def _git_dirs(repo: Path) -> list[Path]:
    """The repository's git directory when it is not ``<repo>/.git`` (``git init
    --separate-git-dir``, a repository that is itself a worktree): it must stay read-only too."""
    dot_git = repo / ".git"
    try:
        if dot_git.is_dir():
            return []
        text = dot_git.read_text(errors="surrogateescape")
    except OSError:
        return []
    if not text.startswith("gitdir: "):
        return []
    gitdir = (repo / text.removeprefix("gitdir: ").strip()).resolve()
    found = [gitdir]
    with contextlib.suppress(OSError):
        found.append((gitdir / (gitdir / "commondir").read_text().strip()).resolve())
    return found


def wrapper(confinement: Confinement, workspace: Workspace) -> Callable[[Sequence[str], Path], Sequence[str]]:
    """A function that wraps a command (pagent's own git in the workspace: auto-commit) in a
    sandbox as strict as the attempt's and stricter: it may write the workspace alone (none of
    the agent's state paths: pagent's git needs none) and has no network, for
    ``supervisor.workspace.git.wrapped_by``."""
    policy = policy_for(replace(confinement, writable=(), network=False), workspace, os.environ)

    def confined(argv: Sequence[str], cwd: Path) -> Sequence[str]:
        return wrap(argv, policy, cwd)

    return confined
