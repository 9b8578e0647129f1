"""The morning hand-off: what leaves the machine when a run ends or needs a person.

Owns checking notification URLs for the plan loader (``check``), the versioned notification
payload built from a run's status view (``payload``), sending it to apprise URLs and a command
(``notify``; apprise is loaded once, lazily, by ``loader``), masking secrets in URLs
(``masking``), pushing branches (``publish``), opening pull requests (``pullrequest``) and one
branch's whole publication (``branches``). The only package that imports apprise. Nothing here
may fail or hang a run: every outside call is bounded in time (commands through
``supervisor.workspace.bounded``), and failures come back as results to record, never as
exceptions. The engine records what these functions return; nothing here writes a record.
"""
