"""Give a worker process's free heap back to the system once it is idle.

A task that reads or stores a page of a thousand log entries builds tens of
megabytes of short-lived objects.  Some of them are not freed when the task
ends: an exception caught on the way (a tenant's 429 that sends the task back
with ``retry``) keeps its traceback, whose frames still hold the page being
read, in a reference cycle that only the collector's full pass frees; in an
idle process no allocation ever triggers that pass, so such a page (about
8 MiB) stayed for good.  And what is freed stays in glibc's heap for the next
allocation, so the process stays at its high-water mark while it has nothing
to do.  Once the process is idle, :class:`IdleTrim` therefore runs a full
``gc.collect()`` and then ``malloc_trim(0)``, which returns every free page
of the heap to the system.  Both walk the heap (a few milliseconds: what the
worker imported is frozen out of the collector's reach, config/celery.py),
so they do not run after every task but in a thread of their own, once the
process has finished its last task and run none for :data:`TRIM_DELAY`
seconds.  A task only notes when it starts and ends.

Connected by the Celery app (config/celery.py) in every worker process: the
threads pool's one process and each prefork child (the thread starts in the
process that first finishes a task, never before a fork).  Without glibc
(``malloc_trim`` missing) it only collects.  docs/performance.md, "Memory".
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from typing import Callable

from celery.signals import task_postrun, task_prerun

from workers.heap import glibc_malloc_trim

logger = logging.getLogger("flowwatch.trim")

# Seconds without a running task before the heap is trimmed: a burst of tasks
# trims once, after its last task.
TRIM_DELAY = 1.0


class IdleTrim:
    """Counts running tasks; a thread trims once they are none for ``delay`` seconds."""

    def __init__(self, trim: Callable[[], object] | None, delay: float = TRIM_DELAY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.trim, self.delay, self.clock = trim, delay, clock
        self.lock = threading.Lock()
        self.running = 0
        self.last_end = 0.0
        self.pending = False          # a task ended since the last trim
        self.wake = threading.Event()
        self.trims = 0
        self._thread_pid: int | None = None

    def started(self) -> None:
        with self.lock:
            self.running += 1

    def finished(self) -> None:
        if self.trim is None:
            return
        with self.lock:
            self.running = max(0, self.running - 1)
            self.last_end = self.clock()
            if self.pending:
                return
            self.pending = True
        self._ensure_thread()
        self.wake.set()

    def due(self) -> float:
        """0 when a trim is due now, else the seconds to wait before asking again."""
        with self.lock:
            if self.running:
                return self.delay
            return max(0.0, self.last_end + self.delay - self.clock())

    def trim_now(self) -> None:
        with self.lock:
            self.pending = False
        try:
            self.trim()
        except Exception:  # a trim must never stop the worker
            logger.exception("malloc_trim failed")
        self.trims += 1

    def _ensure_thread(self) -> None:
        # A prefork child inherits the object but not the thread: start one per process.
        if self._thread_pid != os.getpid():
            self._thread_pid = os.getpid()
            self.wake = threading.Event()
            threading.Thread(target=self._run, name="fw-malloc-trim", daemon=True).start()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            while (wait := self.due()) > 0:
                time.sleep(wait)
            self.trim_now()


def collect_and_trim(malloc_trim: Callable[[], object] | None) -> Callable[[], object]:
    """A full collection (cyclic garbage), then the heap's free pages back to the system."""
    def trim() -> object:
        gc.collect()
        return malloc_trim() if malloc_trim is not None else None
    return trim


IDLE_TRIM = IdleTrim(collect_and_trim(glibc_malloc_trim()))


@task_prerun.connect
def note_task_start(**_: object) -> None:
    IDLE_TRIM.started()


@task_postrun.connect
def note_task_end(**_: object) -> None:
    IDLE_TRIM.finished()
