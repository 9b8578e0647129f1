"""Rules of a plan that would otherwise fail at run time, checked when it is loaded.

Each function returns why a value cannot work (one line, without the file name: the loader adds
that and the key path), or ``None``. They are pure: no file, no git, no process.

- No string anywhere in the plan may hold a NUL character: no argument, environment value or
  path can carry one (``execve`` and every file system call end a string there).
- An environment variable's name is not empty and holds no ``=``.
- ``workdir`` and ``done_marker`` name something inside the worktree that pagent may create or
  remove: not the worktree itself (``.``), nothing inside git's own ``.git`` (any component,
  any case), no directory form for the marker (a trailing ``/``).
- With ``isolation = "none"`` the agent works in the repository itself, which pagent never
  commits in or inspects, so the checks that need a worktree (``done_marker``,
  ``require_changes``, ``confine``) cannot hold there and are refused; ``verify`` runs in the
  repository like in a worktree. ``setup``, ``teardown`` and ``copy`` need a workspace that
  pagent creates (and removes): they are refused there too; ``before_attempt`` runs in the
  repository.
- The sandbox (``sandbox = true`` or ``"auto"``) needs a workspace the agent can commit in
  without writing the plan's repository: ``workspace = "clone"`` (the default then); a git
  worktree (or ``isolation = "none"``) is refused with it. ``sandbox_network = false`` without
  the sandbox would promise what nothing keeps. ``sandbox_writable`` entries are absolute,
  ``~/...`` or ``${VAR}...`` paths (never ``/`` itself); ``!PATH`` takes away one of the agent
  kind's own state paths, as the kind writes it.
- A ``copy`` path names something of the main worktree to copy to the same place in a new
  workspace: relative, no ``..``, not the worktree itself, nothing in ``.git``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from supervisor.plan.model import TaskSettings, WorkspaceKind
from supervisor.plan.schema import toml_key


def nul_in(value: Any, path: str = "") -> str | None:
    """The key path of the first string (key or value) in the parsed TOML ``value`` that holds
    a NUL character, or ``None``."""
    if isinstance(value, str):
        return path if "\0" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{toml_key(key)}" if path else toml_key(key)
            if "\0" in key:
                return here
            if (found := nul_in(item, here)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := nul_in(item, f"{path}[{index}]")) is not None:
                return found
    return None


def env_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an environment variable, or ``None``."""
    if not name:
        return "an environment variable needs a name"
    if "=" in name:
        return f"{name!r} is not a variable name: it holds '='"
    return None


def inside_problem(value: str, *, marker: bool) -> str | None:
    """Why ``value`` cannot be a ``workdir`` (``marker`` False) or a ``done_marker``, or ``None``."""
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        return f"expected a path inside the worktree, got {value!r}"
    if not path.parts:
        if marker:
            return f"expected a file name inside the worktree, got {value!r} (the worktree itself)"
        return f"{value!r} is the worktree itself, which is the default: leave 'workdir' out"
    if any(part.lower() == ".git" for part in path.parts):
        return f"{value!r} is inside git's own '.git', which pagent never touches"
    if marker and (value.endswith("/") or value.endswith("/.")):
        return f"expected a file name, got the directory form {value!r}"
    return None


def unisolated_problem(settings: TaskSettings) -> tuple[str, str] | None:
    """With ``isolation = "none"``: ``(setting, why)`` for a setting that needs a worktree."""
    if settings.isolation != "none":
        return None
    why = "needs isolation = 'worktree': with isolation = 'none' pagent inspects nothing in the repository"
    for name in ("done_marker", "require_changes", "confine"):
        if getattr(settings, name):
            return name, why
    for name in ("setup", "teardown", "copy"):
        if getattr(settings, name):
            return name, "needs isolation = 'worktree': with isolation = 'none' pagent creates no workspace"
    return None


def copy_problem(value: str) -> str | None:
    """Why ``value`` cannot be a ``copy`` entry (a path of the main worktree), or ``None``."""
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or value.startswith("~"):
        return f"expected a path inside the main worktree (relative, no '..'), got {value!r}"
    if not path.parts:
        return f"{value!r} is the whole worktree: name the files or directories to copy"
    if any(part.lower() == ".git" for part in path.parts):
        return f"{value!r} is inside git's own '.git', which pagent never copies"
    return None


def workspace_of(settings: TaskSettings, given: WorkspaceKind | None) -> WorkspaceKind:
    """The workspace kind a task gets: the ``workspace`` the plan gave (``given``), else
    ``clone`` when its sandbox may be on (a worktree writes into the plan's repository), else
    ``worktree``."""
    if given is not None:
        return given
    return "clone" if settings.sandbox is not False else "worktree"


def writable_problem(value: str) -> str | None:
    """Why ``value`` cannot be an entry of ``sandbox_writable``, or ``None``."""
    path = value.removeprefix("!")
    if not path.startswith(("/", "~/", "${", "$")) and path != "~":
        return f"expected an absolute path, '~/...' or '${{VAR}}/...', got {value!r}"
    if path.rstrip("/") == "":
        return f"{value!r} is the whole file system: leave the sandbox off instead"
    return None


def sandbox_settings_problem(
    settings: TaskSettings, given: WorkspaceKind | None, state_paths: Sequence[str]
) -> tuple[str, str] | None:
    """``(setting, why)`` for sandbox settings that cannot work together (see the module
    docstring); ``given`` is the ``workspace`` the plan set (or ``None``), ``state_paths`` the
    agent kind's own."""
    if settings.sandbox is not False:
        if settings.isolation == "none":
            return (
                "sandbox",
                "needs isolation = 'worktree': the agent cannot work in the read-only repository",
            )
        if given == "worktree":
            return "sandbox", (
                "needs workspace = 'clone': a git worktree writes its commits into the main "
                "repository, which the sandbox keeps read-only"
            )
    elif not settings.sandbox_network:
        return (
            "sandbox_network",
            "needs sandbox = true or 'auto': without the sandbox nothing takes the network away",
        )
    if given == "clone" and settings.isolation == "none":
        return "workspace", "needs isolation = 'worktree' (with isolation = 'none' there is no workspace)"
    for entry in settings.sandbox_writable:
        if entry.startswith("!") and entry[1:] not in state_paths:
            known = ", ".join(state_paths) or "none"
            return (
                "sandbox_writable",
                f"{entry!r} takes away none of the agent kind's state paths (they are: {known})",
            )
    return None
