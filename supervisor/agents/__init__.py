"""Agent kinds: how to start an agent CLI, read its output, judge its attempt, check it works.

Each kind is an object in the registry (``registry``); the engine asks the registry and never
names a kind. Today: ``plain`` (exit code), ``claude`` (Claude Code's stream-json), ``codex``
(``codex exec --json``), ``gemini`` (Gemini CLI's stream-json), ``opencode`` (``opencode run
--format json``; each a parser module and a ``*_kind`` module, sharing ``clikind`` and
``evidence``) and the built-in offline ``demo`` agent.
"""
