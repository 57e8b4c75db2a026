"""Thread scheduling of the bridge, as a DAW schedules its audio: the audio path (receive and worker threads) in
the real-time class where the OS allows it, the engine's between-blocks thread one step under it (its block is
due when the next one arrives, but the arrival must preempt it), and the work that may wait (session builds)
in the normal class, niced.

On a busy machine, plain scheduling shares a core between the bridge and every other runnable process, so a
block that arrives while the bridge's threads are queued behind them waits a scheduler slice (milliseconds):
that, not the bridge's own work, was the round trip's tail (``fxmix bench bridge``). Linux applies these
settings per thread (the thread ids below), and a thread inherits its creator's class, hence the explicit step
down for the threads the audio threads start.

The real-time class needs ``CAP_SYS_NICE`` or an ``RLIMIT_RTPRIO`` of at least the priority (e.g. the
``@audio - rtprio 95`` line of ``/etc/security/limits.d/audio.conf``); without it the thread stays in the
normal class and the returned text says why.
"""

from __future__ import annotations

import os
import threading

#: Default real-time priority of the bridge's audio threads (SCHED_FIFO 1..99): under JACK's default of 10 for
#: clients' process threads on many systems, over everything in the normal class.
DEFAULT_REALTIME_PRIORITY = 10
#: Nice value of the bridge's threads whose work may wait (session builds).
BACKGROUND_NICE = 10

_FIFO = getattr(os, "SCHED_FIFO", None)
_RR = getattr(os, "SCHED_RR", None)


def describe_thread(tid: int | None = None) -> str:
    """``"fifo 10"``, ``"rr 5"`` or ``"normal, nice 0"`` for a thread (default: the calling one)."""
    tid = threading.get_native_id() if tid is None else tid
    if not hasattr(os, "sched_getscheduler"):
        return "normal (no per-thread scheduling here)"
    policy = os.sched_getscheduler(tid)
    if policy in (_FIFO, _RR):
        return f"{'fifo' if policy == _FIFO else 'rr'} {os.sched_getparam(tid).sched_priority}"
    return f"normal, nice {os.getpriority(os.PRIO_PROCESS, tid)}"


def realtime_thread(priority: int) -> str:
    """Put the calling thread in SCHED_FIFO at ``priority`` (1..99); returns :func:`describe_thread`, with the
    reason when the OS refused (the thread then keeps its class)."""
    if _FIFO is None or not hasattr(os, "sched_setscheduler"):
        return describe_thread() + " (real-time scheduling is not available on this OS)"
    tid = threading.get_native_id()
    prio = max(os.sched_get_priority_min(_FIFO), min(os.sched_get_priority_max(_FIFO), int(priority)))
    try:
        os.sched_setscheduler(tid, _FIFO, os.sched_param(prio))
    except OSError as exc:
        return describe_thread(tid) + f" (SCHED_FIFO {prio} refused: {exc.strerror}; needs CAP_SYS_NICE or rtprio)"
    return describe_thread(tid)


def below_creator() -> str:
    """A thread started by a real-time thread: one priority step under it (same class), so its creator preempts
    it; a thread in the normal class is left as it is. Returns :func:`describe_thread`."""
    tid = threading.get_native_id()
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(tid) in (_FIFO, _RR):
        policy = os.sched_getscheduler(tid)
        prio = os.sched_getparam(tid).sched_priority
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(max(os.sched_get_priority_min(policy), prio - 1)))
        except OSError:  # lowering one's own priority is always allowed; keep going if an OS disagrees
            pass
    return describe_thread(tid)


def leave_realtime(nice: int = BACKGROUND_NICE) -> str:
    """A thread whose work may wait, started by a real-time thread (whose class it inherits): to the normal
    class at nice ``nice``, so it cannot delay the audio path; a thread in the normal class is left as it is.
    Returns :func:`describe_thread`."""
    if not hasattr(os, "sched_setscheduler"):
        return describe_thread()
    tid = threading.get_native_id()
    try:
        if os.sched_getscheduler(tid) in (_FIFO, _RR):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, tid, max(int(nice), os.getpriority(os.PRIO_PROCESS, tid)))
    except OSError:  # lowering one's own priority is always allowed; keep going if an OS disagrees
        pass
    return describe_thread(tid)
