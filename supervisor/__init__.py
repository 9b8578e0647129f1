"""pagent-run: unattended batch runs of coding agents, one git worktree per task."""

from __future__ import annotations

__version__ = "0.1.0"
