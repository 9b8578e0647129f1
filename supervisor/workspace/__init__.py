"""Where a task works: git itself (``git``: the one bounded, interruptible runner, hooks off;
``gitproc``: how its processes run), the plan's repository, the refs pagent owns there
(``refs``: reserved branches, pins under ``refs/pagent/``), task worktrees (``worktree``) and
which git directory each really uses (``gitdir``), the local executor's workspaces (``local``)
and the git facts of a workspace (head, diff stats, auto-commit). Every git call pagent makes
goes through ``git``, except those that talk to another machine (``git push``, ``gh``) and
notification commands: they run through ``bounded``, which kills a command's whole process
group at its time bound."""
