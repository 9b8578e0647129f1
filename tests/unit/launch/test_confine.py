"""From a ``Confinement`` to bubblewrap's policy: path notation, what is writable, read-only,
hidden; and the engine's confinement of a task (its kind's state less what the plan takes away)."""

from __future__ import annotations

from pathlib import Path

from supervisor.agents.claude import ClaudeKind
from supervisor.engine.spec import confinement
from supervisor.launch.confine import expand, policy_for
from supervisor.plan.model import TaskSettings
from supervisor.seam import Confinement, Workspace
from supervisor.ui.compose import load_plan

ENV = {"HOME": "/home/u", "CODEX_HOME": "/opt/codex"}


def test_paths_expand_in_the_attempts_environment() -> None:
    assert expand("~/.claude/", ENV) == Path("/home/u/.claude")
    assert expand("~", ENV) == Path("/home/u")
    assert expand("${CODEX_HOME:-~/.codex}/", ENV) == Path("/opt/codex")
    assert expand("${CODEX_HOME:-~/.codex}/", {"HOME": "/h"}) == Path("/h/.codex")
    assert expand("$XDG_DATA_HOME/opencode/", ENV) is None  # unset, no fallback: skipped
    assert expand("~/x", {}) is None  # no HOME: nothing to expand to
    assert expand("/abs/dir/", {}) == Path("/abs/dir")
    assert expand("relative/", ENV) is None


def test_the_policy_joins_workspace_repository_and_state(tmp_path: Path) -> None:
    """The workspace writable first, directories and files apart, the repository and the given
    read-only paths read-only, /run hidden, the network as asked."""
    ws = Workspace(tmp_path / "clone", "b", None, repo=tmp_path / "repo", kind="clone")
    given = Confinement(("~/.claude/", "~/.claude.json"), read_only=(tmp_path / "plans",), network=False)
    policy = policy_for(given, ws, {"HOME": str(tmp_path / "home")})
    assert policy.writable == (tmp_path / "clone", tmp_path / "home" / ".claude")
    assert policy.writable_if_present == (tmp_path / "home" / ".claude.json",)
    assert policy.read_only == (tmp_path / "plans", tmp_path / "repo")
    assert policy.hidden == (Path("/run"),)
    assert policy.network is False


def test_a_separate_git_dir_stays_read_only_too(tmp_path: Path) -> None:
    """A repository whose .git is a file (a worktree, --separate-git-dir): its git directory and
    common directory are read-only as well."""
    gitdir = tmp_path / "store" / "worktrees" / "r"
    gitdir.mkdir(parents=True)
    (gitdir / "commondir").write_text("../..\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".git").write_text(f"gitdir: {gitdir}\n")
    policy = policy_for(Confinement(), Workspace(tmp_path / "c", "b", None, repo=repo), {})
    assert policy.read_only == (repo, gitdir, tmp_path / "store")


def test_a_task_gets_its_kinds_state_less_what_the_plan_takes_away(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text('[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "x"\n')
    plan = load_plan(plan_file)
    settings = TaskSettings(
        sandbox=True, sandbox_writable=("!~/.claude.json", "/cache/"), sandbox_network=False
    )
    got = confinement(plan, settings, ClaudeKind())
    assert got == Confinement(("~/.claude/", "/cache/"), read_only=(plan.plan_dir,), network=False)


def test_every_kinds_state_paths_expand() -> None:
    """The kinds' own paths, with their relocations set and unset."""
    from supervisor.agents.registry import KINDS

    for name in KINDS.names:
        for entry in getattr(KINDS[name], "state_paths", ()):
            assert expand(entry, {"HOME": "/h"}) is not None, (name, entry)
    gemini = KINDS["gemini"].state_paths[0]
    assert expand(gemini, {"HOME": "/h"}) == Path("/h/.gemini")
    assert expand(gemini, {"HOME": "/h", "GEMINI_CLI_HOME": "/a/gemini"}) == Path("/a/gemini/.gemini")
    assert expand(KINDS["codex"].state_paths[0], {"HOME": "/h", "CODEX_HOME": "/k"}) == Path("/k")
