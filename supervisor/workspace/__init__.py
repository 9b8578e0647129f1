"""Where a task works: git itself, the plan's repository, task worktrees and the git facts of
a workspace (head, diff stats, auto-commit). Every git call pagent makes goes through ``git``,
except those that talk to another machine (``git push``, ``gh``) and notification commands: they
run through ``bounded``, which kills a command's whole process group at its time bound."""
