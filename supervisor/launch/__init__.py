"""Where an attempt runs: its local implementation of the executor seam, and Ray.

Owns local processes (``local``, ``process``: own session, pidfd, parent-death signal), what the
OS tells about them (``proctree``: trees, cookies, the stop sequence; the only package that uses
psutil), the sandbox, and the Ray executor (``ray``, with ``ray_jobs`` the only module that
imports Ray). The ``node_*`` modules and ``ray_node`` form the program each Ray job runs on its
node; they use only the standard library (and git on PATH), so this ``__init__`` stays free of
imports: a node imports it before anything else.
"""
