"""Where an attempt runs: the executor seam and its local implementation.

Owns the seam (``seam``), local processes (``local``: own session, pidfd, parent-death signal)
and what the OS tells about them (``proctree``: trees, cookies, the stop sequence). The only
package that uses psutil.
"""
