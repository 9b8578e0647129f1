"""The supervisor's core: one invocation from lock to summary, waves, tasks, attempts, retries.

Owns the invocation (``invocation``), beginning and repairing runs (``runs``), the waves
(``runner``), the one writer of task and attempt records (``runstate``), one task's life
(``taskrun``), one attempt's life (``attempt``), liveness decisions (``watchdog``), the retry
policy (``policy``), what the spec of an attempt is (``spec``), the events it emits
(``events``), and ``pagent clean`` (``cleanup``). Never prints; talks to processes only through
the executor seam and to agent kinds only through the registry it is given.
"""
