"""The no-op task of bench/bench_tasks.py through Flowwatch's app (the worker imports it with --include)."""

from workers.routing import routed_task

QUEUE = "periodic_run"  # a declared queue, so Flowwatch's app accepts it


@routed_task(QUEUE, name="bench.noop")
def noop() -> None:
    return None
