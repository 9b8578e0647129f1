"""Agent kinds: how to start an agent CLI, read its output, judge its attempt, check it works.

Each kind is an object in the registry (``registry``); the engine asks the registry and never
names a kind. Today: ``plain`` (exit code), ``claude`` (Claude Code's stream-json) and the
built-in offline ``demo`` agent.
"""
