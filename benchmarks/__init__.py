"""The performance suite of issue 7: pagent-run next to GNU parallel, xargs, git and cat.

``python -m benchmarks`` runs every section (``--quick`` for a smoke run), prints a table and
writes the measurements as JSON to ``benchmarks/results/``. See ``benchmarks/run.py``.
"""
