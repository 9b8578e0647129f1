"""The two threads that start every attempt's process, so that starting one never blocks the loop.

``subprocess`` starts a child with vfork: the calling thread is suspended until the child has
exec'd its program, which on a busy machine takes as long as the scheduler makes the new child
wait for a CPU (measured: 0.3 ms on a quiet 2-core VM, 4 ms under a load of 5). On the event
loop's thread that is time in which nothing else of the run happens; on a spawner thread the
loop goes on (the interpreter lets go of the GIL around vfork and around the wait for the exec).
Two of them let one child exec while the next is being set up: with quick agents, starting
processes is what the run waits for (measured side by side on a 2-core VM: 4 % less wall time
for 1000 no-op attempts than with one thread; the vfork alone is about half of a start).

The threads are started once and live as long as the process, never ending before it: Linux
sends a child's parent-death signal (``PR_SET_PDEATHSIG``, which ``setpriv`` asks for in the
child) when the *thread* that created the child ends, so threads that outlive every attempt are
what keeps "the agent dies with the supervisor" true (anyio's worker threads end after ten idle
seconds, the event loop's own thread would do too). They are daemon threads: they never hold
the interpreter's exit back, and they end only with the process.

The children they start are listed under their thread in ``/proc/PID/task/TID/children``, not
under the main thread, whose list ``supervisor.launch.orphans`` reads: what an attempt leaves
behind when its processes exit is still re-parented to the main thread (the kernel hands
orphans to the subreaper's first live thread).

The threads and their hand-off are ``supervisor.worker.Worker``'s.
"""

from __future__ import annotations

from supervisor.worker import Worker

SPAWNER = Worker("pagent-spawner", threads=2)
