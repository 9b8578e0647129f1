"""The durable record: runs, task runs and attempts, and where everything lives under ``.pagent/``.

Owns the records and their state machine (``records``), the SQLite store (``store``), the plan
lock (``lock``), the read models for status and reports (``views``), earlier runs and retention
(``history``), and the on-disk layout (``layout``). Knows nothing of processes or git.
"""
