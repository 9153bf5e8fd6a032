"""Benchmark: no-op task throughput through Flowwatch's Celery app against bare Celery.

    .venv/bin/python bench/bench_tasks.py [--tasks 1000] [--rounds 5] [--pools threads,prefork]

On a private Redis, per pool, it publishes ``--tasks`` no-ops to
``periodic_run`` through each app (Flowwatch's in database 0, the bare one
in database 5) and keeps the raw messages; then it starts both apps' workers
(``--pool <pool> --concurrency 2``) side by side, each on its own database,
and for ``--rounds`` rounds, alternating, puts one app's messages back with
one ``LPUSH`` and times how fast its worker drains them: until the queue and
kombu's unacked hash are empty.  Flowwatch's side is its real app
(``celery -A config``: routing by the queue table, the publish header, the
heartbeat and processed-counter signals, late acks); the anchor is
bench/noop_bare.py.  Beside the rate it reads the CPU time the worker's
processes spent per drained task (utime + stime from /proc): a figure the
neighbours of a shared machine disturb far less than wall-clock rates.
Publishing is timed too (once per app: a rough figure).  Prints the medians
and Flowwatch / bare (target >= 0.9 for consume).
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

from bench.support import ROOT, descendants, private_stack, python_env, start, stop  # noqa: E402

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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and every process below it."""
    ticks = 0
    for each in descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def drain(client, messages: list[bytes], timeout: float = 60.0) -> float:
    """Push ``messages`` at once; tasks per second until nothing waits and nothing is unacked."""
    deadline = time.monotonic() + timeout
    started = time.perf_counter()
    client.lpush(QUEUE, *messages)
    while client.llen(QUEUE) or client.hlen("unacked"):
        if time.monotonic() > deadline:
            raise SystemExit("a worker did not drain the queue in time")
        time.sleep(0.002)
    return len(messages) / (time.perf_counter() - started)


def staged(side: str, client, count: int, env: dict[str, str]) -> tuple[float, list[bytes]]:
    """Publish ``count`` tasks with no worker running; answers the rate and the raw messages."""
    client.delete(QUEUE)
    rate = publish(side, count, env)
    messages = client.lrange(QUEUE, 0, -1)
    client.delete(QUEUE)
    if len(messages) != count:
        raise SystemExit(f"{side}: {len(messages)} messages in {QUEUE}, expected {count}")
    return rate, messages[::-1]  # LPUSH them back in the order they were sent


def one_pool(pool: str, args: argparse.Namespace, server, var_dir: Path, envs: dict) -> dict[str, list[float]]:
    clients = {side: server.client(db) for side, db in DATABASES.items()}
    published, messages = {}, {}
    for side in DATABASES:
        published[side], messages[side] = staged(side, clients[side], args.tasks, envs[side])
    processes = {side: start(worker_command(side, pool), envs[side], var_dir / f"{side}-{pool}.log")
                 for side in DATABASES}
    try:
        for side in DATABASES:  # warm: a first small batch drained means the worker consumes
            drain(clients[side], messages[side][:20], timeout=90)
        consumed: dict[str, list[float]] = {side: [] for side in DATABASES}
        cpu: dict[str, list[float]] = {side: [] for side in DATABASES}
        for round_number in range(args.rounds):
            order = list(DATABASES) if round_number % 2 == 0 else list(DATABASES)[::-1]
            for side in order:  # alternating, each first in turn: a noisy neighbour hurts both alike
                before = cpu_seconds(processes[side].pid)
                consumed[side].append(drain(clients[side], messages[side]))
                cpu[side].append((cpu_seconds(processes[side].pid) - before) / args.tasks * 1e6)
    finally:
        for process in processes.values():
            stop(process, timeout=30)
    return {side: [published[side], statistics.median(consumed[side]), statistics.median(cpu[side])]
            for side in DATABASES}


DATABASES = {"bare": 5, "flowwatch": 0}


def bare_env(env: dict[str, str], broker_url: str) -> dict[str, str]:
    """The anchor's environment: without DJANGO_SETTINGS_MODULE.

    With it, Celery installs its Django fixup in any app, which sets Django
    up, and Django's apps load Flowwatch's Celery app and its worker signals
    (heartbeat, processed counters): the "bare" worker would then do per task
    what Flowwatch's does.
    """
    bare = python_env({**env, "BENCH_BROKER_URL": broker_url})
    bare.pop("DJANGO_SETTINGS_MODULE", None)
    return bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pools", default="threads,prefork")
    args = parser.parse_args()
    with private_stack() as (server, var_dir, env):
        envs = {"flowwatch": python_env(env), "bare": bare_env(env, server.url(5))}
        results = {pool: one_pool(pool, args, server, var_dir, envs) for pool in args.pools.split(",")}
    print(f"{args.tasks} no-op tasks per round, {args.rounds} rounds, concurrency 2, pid {os.getpid()}")
    print(f"{'app':<10} {'pool':<8} {'publish/s':>10} {'consume/s':>10} {'CPU µs/task':>12}")
    for pool, sides in results.items():
        for side, (published, consumed, cpu) in sides.items():
            print(f"{side:<10} {pool:<8} {published:>10.0f} {consumed:>10.0f} {cpu:>12.0f}")
    for pool, sides in results.items():
        ratio = sides["flowwatch"][1] / sides["bare"][1]
        print(f"anchor: bare Celery, --pool {pool}: consume flowwatch / bare = {ratio:.2f} (target >= 0.9); "
              f"CPU per task bare / flowwatch = {sides['bare'][2] / sides['flowwatch'][2]:.2f}; "
              f"publish = {sides['flowwatch'][0] / sides['bare'][0]:.2f}")


if __name__ == "__main__":
    main()
