"""workers/trim.py: a worker process gives its free heap back once it is idle.

The memory it saves is measured by bench/bench_memory.py; these check when the
trim runs: after the last running task, once, and never while a task runs.
"""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import ROOT, subprocess_env
from workers.heap import glibc_malloc_trim
from workers.trim import IdleTrim


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_trim_is_due_only_once_no_task_has_run_for_the_delay():
    clock = Clock()
    idle = IdleTrim(lambda: None, delay=1.0, clock=clock)
    idle._ensure_thread = lambda: None  # the schedule alone, without the thread
    idle.started()
    idle.started()
    idle.finished()
    clock.now += 5
    assert idle.due() == 1.0  # one task still runs: ask again later
    idle.finished()
    assert idle.due() == 1.0  # the last task just ended
    clock.now += 0.4
    assert round(idle.due(), 6) == 0.6
    clock.now += 0.6
    assert idle.due() == 0.0


def test_a_burst_of_tasks_trims_once_after_its_last_task():
    calls: list[float] = []
    idle = IdleTrim(lambda: calls.append(time.monotonic()), delay=0.2)
    for _ in range(50):
        idle.started()
        idle.finished()
    assert wait_for(lambda: idle.trims == 1)
    idle.started()
    idle.finished()
    assert wait_for(lambda: idle.trims == 2)  # a later task makes the next trim due
    assert len(calls) == 2


PROBE = """
import sys, threading
import config.celery
connected = "workers.trim" in sys.modules  # by the app itself, as in every worker
from celery import Celery
from workers import trim
calls = threading.Event()
trim.IDLE_TRIM = trim.IdleTrim(calls.set, delay=0.05)
app = Celery("trim-probe", set_as_current=False)
app.conf.task_always_eager = True
@app.task
def running():
    return trim.IDLE_TRIM.running
print(connected, running.delay().get(), calls.wait(30))
"""


def test_the_celery_app_connects_the_trim_to_its_tasks():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1", "True"]  # connected; one task ran; then the trim


def test_the_trim_is_glibcs_and_runs():
    trim = glibc_malloc_trim()
    assert trim is not None  # the supported platforms run on glibc
    assert trim() in (0, 1)


class Page:
    """Stands for a page held in a reference cycle (a caught exception's traceback)."""

    def __init__(self) -> None:
        self.cycle = self


def test_the_trim_collects_cyclic_garbage_first_then_trims():
    import gc
    import weakref

    from workers.trim import collect_and_trim

    trimmed: list[bool] = []
    page = Page()
    gone = weakref.ref(page)
    enabled = gc.isenabled()
    gc.disable()  # no automatic pass may collect it for the trim
    try:
        del page
        assert gone() is not None  # garbage, but alive until a collection
        collect_and_trim(lambda: trimmed.append(gone() is None))()
    finally:
        if enabled:
            gc.enable()
    assert gone() is None and trimmed == [True]  # collected, and before the heap was trimmed
    collect_and_trim(None)()  # without glibc: only the collection


IDLE_COLLECT_PROBE = """
import gc, sys, time, weakref
import config.celery
from celery import Celery
from workers import trim

class Page:
    def __init__(self):
        self.cycle = self

app = Celery("trim-probe", set_as_current=False)
app.conf.task_always_eager = True
kept = []

@app.task
def read_a_page():
    page = Page()
    kept.append(weakref.ref(page))

gc.disable()  # only the idle trim may collect
read_a_page.delay()
before = kept[0]() is not None
deadline = time.monotonic() + 30
while trim.IDLE_TRIM.trims == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
print(before, trim.IDLE_TRIM.trims, kept[0]() is None)
"""


def test_a_worker_idle_for_the_delay_collects_what_its_tasks_left_in_cycles():
    done = subprocess.run([sys.executable, "-c", IDLE_COLLECT_PROBE], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1", "True"]  # garbage after the task; one idle trim; collected
