"""Benchmark: no-op task throughput through Flowwatch's Celery app against bare Celery.

    .venv/bin/python bench/bench_tasks.py [--tasks 2000] [--rounds 2] [--pools threads,prefork]

On a private Redis, for each pool and round (interleaved), it publishes
``--tasks`` no-ops to ``periodic_run`` through one app, then starts that
app's worker (``--pool <pool> --concurrency 2``) and times how fast it
drains the queue: from the first message taken to the queue and kombu's
unacked hash both empty.  Flowwatch's side is its real app
(``celery -A config``: its routing, publish header, heartbeat and counter
signals, late acks); the anchor is bench/noop_bare.py.  Publishing is timed
too.  Prints the medians and Flowwatch / bare (target >= 0.9 for consume).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import ROOT, private_stack, python_env, start, stop  # noqa: E402

QUEUE = "periodic_run"


def publish(side: str, count: int, env: dict[str, str]) -> float:
    """Publish in a child (each app in a clean interpreter); answers tasks per second."""
    code = (
        "import sys, time\n"
        + ("import django; django.setup(); from config.celery import app; import bench.noop_flowwatch as m\n"
           if side == "flowwatch" else "import bench.noop_bare as m\n")
        + f"started = time.perf_counter()\nfor _ in range({count}): m.noop.apply_async()\n"
        "print(time.perf_counter() - started)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True)
    return count / float(done.stdout.strip().splitlines()[-1])


def worker_command(side: str, pool: str) -> list[str]:
    app, extra = ("config", ["--include", "bench.noop_flowwatch"]) if side == "flowwatch" else ("bench.noop_bare", [])
    return [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", QUEUE, "-n", f"{side}@%h", "--pool", pool,
            "--concurrency", "2", "--loglevel", "WARNING", "--without-mingle", "--without-gossip", *extra]


def drain(client, count: int, process: subprocess.Popen, timeout: float = 60.0) -> float:
    """Tasks per second from the first message taken to nothing waiting or unacked."""
    deadline = time.monotonic() + timeout
    while client.llen(QUEUE) >= count:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the worker did not start consuming")
        time.sleep(0.005)
    started = time.perf_counter()
    while client.llen(QUEUE) or client.hlen("unacked"):
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not drain the queue in time")
        time.sleep(0.005)
    return count / (time.perf_counter() - started)


def one_run(side: str, pool: str, args: argparse.Namespace, server, var_dir: Path, env: dict) -> tuple[float, float]:
    client = server.client(0)
    client.flushdb()
    published = publish(side, args.tasks, env)
    if client.llen(QUEUE) != args.tasks:
        raise SystemExit(f"{side}: {client.llen(QUEUE)} messages in {QUEUE}, expected {args.tasks}")
    process = start(worker_command(side, pool), env, var_dir / f"{side}-{pool}.log")
    try:
        consumed = drain(client, args.tasks, process)
    finally:
        stop(process, timeout=30)
    return published, consumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pools", default="threads,prefork")
    args = parser.parse_args()
    with private_stack() as (server, var_dir, env):
        env = python_env({**env, "BENCH_BROKER_URL": server.url(0)})
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for pool in args.pools.split(","):
                for side in ("bare", "flowwatch"):
                    results.setdefault((side, pool), []).append(one_run(side, pool, args, server, var_dir, env))
    print(f"{args.tasks} no-op tasks per run, {args.rounds} rounds, concurrency 2, pid {os.getpid()}")
    print(f"{'app':<10} {'pool':<8} {'publish/s':>10} {'consume/s':>10}")
    for (side, pool), runs in results.items():
        print(f"{side:<10} {pool:<8} {statistics.median(r[0] for r in runs):>10.0f}"
              f" {statistics.median(r[1] for r in runs):>10.0f}")
    for pool in args.pools.split(","):
        bare, ours = results[("bare", pool)], results[("flowwatch", pool)]
        ratio = statistics.median(r[1] for r in ours) / statistics.median(r[1] for r in bare)
        publish_ratio = statistics.median(r[0] for r in ours) / statistics.median(r[0] for r in bare)
        print(f"anchor: bare Celery, --pool {pool}: consume flowwatch / bare = {ratio:.2f} (target >= 0.9); "
              f"publish = {publish_ratio:.2f}")


if __name__ == "__main__":
    main()
