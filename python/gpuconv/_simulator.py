"""A block scheduler for Numba's CUDA simulator that waits instead of polling.

The simulator runs each CUDA thread of a block as a Python thread. Its BlockManager.run learns which
threads wait at syncthreads() by looping over every live thread until all have arrived or finished;
under the GIL that loop takes the interpreter from the threads doing the work. Profiled on a
gradgradcheck of gpuconv.torch.conv2d (642 blocks, 73,920 simulated threads), the loop's `is_alive`
calls and list rebuilds took 36 s of the test's 86 s.

`install()` replaces the loop with a condition variable: a thread that reaches a barrier or finishes
says so, and the manager sleeps until every thread has done one or the other, or one has failed. The
rules are the stock manager's: a barrier opens when every thread still running waits at it (threads
that returned do not hold it), the first failure aborts the others (they raise at their next barrier)
and is raised with its thread and block named. Only the scheduling changes, and only for the pinned
numba-cuda simulator whose internals this was written against (`install` checks them and otherwise
leaves the stock scheduler in place).
"""

from __future__ import annotations

import threading

import numpy as np

_installed = False


def _thread_run(self, _stock_run):
    """BlockThread.run, then tell the manager this thread is done (and whether it failed)."""
    try:
        _stock_run(self)
    finally:
        m = self._manager
        with m._gc_cv:
            m._gc_done += 1
            if self.exception:
                m._gc_failed.append(self)
            m._gc_cv.notify()


def _syncthreads(self):
    if self.abort:
        raise RuntimeError("abort flag set on syncthreads call")
    m = self._manager
    with m._gc_cv:
        self.syncthreads_blocked = True
        m._gc_waiting += 1
        m._gc_cv.notify()
    self.syncthreads_event.wait()
    self.syncthreads_event.clear()
    if self.abort:
        raise RuntimeError("abort flag set on syncthreads clear")


def _manager_run(self, grid_point, *args, BlockThread):
    cv = self._gc_cv = threading.Condition()
    self._gc_waiting, self._gc_done, self._gc_failed = 0, 0, []

    def target():
        self._f(*args)

    threads = [BlockThread(target, self, grid_point, block_point, self._debug)
               for block_point in np.ndindex(*self._block_dim)]
    n = len(threads)
    with cv:                # held while starting: no thread can report before all are counted in n
        for t in threads:
            t.start()
        while True:
            cv.wait_for(lambda: self._gc_failed or self._gc_waiting + self._gc_done == n)
            if self._gc_failed:
                for t in threads:        # as the stock manager: abort the rest, don't join them
                    t.abort = True
                    t.syncthreads_blocked = False
                    t.syncthreads_event.set()
                failed = self._gc_failed[0]
                raise failed.exception[0].with_traceback(failed.exception[1])
            if self._gc_done == n:
                return
            # every thread still running waits at the barrier: open it
            self._gc_waiting = 0
            for t in threads:
                if t.syncthreads_blocked:
                    t.syncthreads_blocked = False
                    t.syncthreads_event.set()


def install() -> bool:
    """Use the waiting scheduler in this process's simulator; False (stock scheduler kept) where the
    simulator is not the one it was written for."""
    global _installed
    if _installed:
        return True
    try:
        from numba.cuda.simulator import kernel
    except ImportError:
        return False
    bt, bm = getattr(kernel, "BlockThread", None), getattr(kernel, "BlockManager", None)
    expected = bt is not None and bm is not None and all(
        hasattr(bt, a) for a in ("run", "syncthreads", "syncthreads_count")) and hasattr(bm, "run")
    if not expected:
        return False
    stock_thread_run = bt.run
    bt.run = lambda self: _thread_run(self, stock_thread_run)
    bt.syncthreads = _syncthreads
    bm.run = lambda self, grid_point, *args: _manager_run(self, grid_point, *args, BlockThread=bt)
    _installed = True
    return True
