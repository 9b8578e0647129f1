"""Where an attempt's processes run: the executor seam, the local executor, and Ray.

The ``node_*`` modules and ``ray_node`` form the program each Ray job runs on its node; they use
only the standard library (and git on PATH), so this package's ``__init__`` must stay free of
imports: a node imports it before anything else.
"""
