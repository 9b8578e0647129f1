"""Where a task works: git itself, the plan's repository, task worktrees and the git facts of
a workspace (head, diff stats, auto-commit). Every git call pagent makes goes through ``git``."""
