"""The morning hand-off: what leaves the machine when a run ends or needs a person.

This package owns the ``[notify]`` and ``[publish]`` tables of a plan (``config``), the versioned
notification payload built from a run's status view (``payload``), sending it to apprise URLs and a
command (``notify``), and pushing task branches and opening pull requests (``publish``). Nothing
here may fail or hang a run: every outside call is bounded in time, and failures come back as
results to record, never as exceptions.
"""
