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

Where greenlet is installed (the dev and bench extras bring it), the simulated threads of a block are
greenlets in the calling thread instead of OS threads: the manager runs each until it reaches a
barrier or returns, then opens the barrier and runs them again, so no OS thread is created or woken
per simulated thread. The fake CUDA module asks `threading.current_thread()` for the running thread's
indices and barrier; in the simulator's kernelapi module that name answers with the running greenlet's
simulated thread. Between barriers the threads then run one after another in thread order rather
than interleaved at the interpreter's whim: a kernel that is correct under CUDA's rules gives the same
result either way (a race on shared memory is a bug both in CUDA and here).
"""

from __future__ import annotations

import os
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


class _SimThread:
    """One simulated CUDA thread run as a greenlet: what the fake CUDA module reads from
    `threading.current_thread()` (indices, lane, barriers) and what the manager reads back."""

    def __init__(self, manager, block, index, stock):
        from numba.cuda.simulator.kernelapi import Dim3

        self._manager = manager
        self.blockIdx = Dim3(*block)
        self.threadIdx = Dim3(*index)
        bd = Dim3(*manager._block_dim)
        self.thread_id = self.threadIdx.x + bd.x * (self.threadIdx.y + bd.y * self.threadIdx.z)
        self.syncthreads_blocked = False
        self.abort = False
        self._stock = stock

    def syncthreads(self):
        if self.abort:
            raise RuntimeError("abort flag set on syncthreads call")
        self.syncthreads_blocked = True
        self.glet.parent.switch()       # back to the manager until every running thread is here
        if self.abort:
            raise RuntimeError("abort flag set on syncthreads clear")

    # the stock reductions over the block (block_state, then two barriers), on these barriers
    def syncthreads_count(self, value):
        return self._stock.syncthreads_count(self, value)

    def syncthreads_and(self, value):
        return self._stock.syncthreads_and(self, value)

    def syncthreads_or(self, value):
        return self._stock.syncthreads_or(self, value)

    def __str__(self):
        return "Thread <<<%s, %s>>>" % (self.blockIdx, self.threadIdx)


def _greenlet_manager_run(self, grid_point, *args, greenlet, stock_thread, stock_run):
    if self._debug:                     # debug mode (np.seterr per thread): the threaded scheduler
        return stock_run(self, grid_point, *args)

    def target():
        self._f(*args)

    threads = []
    for block_point in np.ndindex(*self._block_dim):
        t = _SimThread(self, grid_point, block_point, stock_thread)
        t.glet = greenlet(target)
        t.glet.sim = t
        threads.append(t)
    running = threads
    while running:
        waiting = []
        for t in running:               # each until it returns or waits at the barrier
            try:
                t.glet.switch()
            except Exception as e:      # as the stock BlockThread names it; the rest are abandoned
                for other in threads:
                    other.abort = True
                msg = f"tid={list(t.threadIdx)} ctaid={list(t.blockIdx)}" + (f": {e}" if str(e) else "")
                raise type(e)(msg).with_traceback(e.__traceback__) from None
            if t.syncthreads_blocked:
                waiting.append(t)
        for t in waiting:               # every thread still running waits here: open the barrier
            t.syncthreads_blocked = False
        running = waiting


class _Threading:
    """The simulator kernelapi's `threading`: current_thread() is the running greenlet's simulated
    thread inside a block, the real one elsewhere; everything else is the threading module's."""

    def __init__(self, greenlet_module):
        self._getcurrent = greenlet_module.getcurrent

    def current_thread(self):
        sim = getattr(self._getcurrent(), "sim", None)
        return sim if sim is not None else threading.current_thread()

    def __getattr__(self, name):
        return getattr(threading, name)


def _install_greenlets(kernel) -> bool:
    try:
        import greenlet
        from numba.cuda.simulator import kernelapi
    except ImportError:
        return False
    if getattr(kernelapi, "threading", None) is not threading:
        return False

    class SimGreenlet(greenlet.greenlet):
        sim = None

    stock_thread, threaded_run = kernel.BlockThread, kernel.BlockManager.run
    kernelapi.threading = _Threading(greenlet)
    kernel.BlockManager.run = lambda self, grid_point, *args: _greenlet_manager_run(
        self, grid_point, *args, greenlet=SimGreenlet, stock_thread=stock_thread, stock_run=threaded_run)
    return True


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
    if os.environ.get("GPUCONV_SIMULATOR_THREADS", "0") != "1":
        _install_greenlets(kernel)
    _installed = True
    return True
