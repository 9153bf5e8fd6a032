"""Benchmark: PSS of an idle small installation, every program of one `boot.py up`.

    .venv/bin/python bench/bench_memory.py [--settle 15] [--concurrency 2] [--no-simulator] [--no-pools]
                                           [--after-backfill] [--backfill-timeout 900]

It runs ``boot.py up`` with ``SIMULATOR=true`` (the bundled Redis, the
simulator, web, beat, controller and one worker per worker group, with each
group's pool from workers/queues.py) in a private VAR_DIR on free loopback
ports, waits until /healthz answers and every worker has written its
heartbeat, lets the stack settle idle, then sums the proportional set size
(PSS: a page shared by N processes counts 1/N to each) of supervisord and
everything under it.  It prints each program's share, the total against the
target (550 MiB), and what one worker costs with each pool: the hot group's
worker started alone with ``--pool threads`` and with ``--pool prefork``.
``--no-simulator`` measures the stack without it.

With the simulator the pipeline reads its demo history from the first minute,
so the first figure is taken while that backfill runs.  ``--after-backfill``
keeps that figure and then waits until the backfill is done (every
BackfillWindow has ``done_at``, no LogPage is pending and, at one moment, no
task is queued or unacknowledged in the broker), sampling the total
every ten seconds on the way (its peak is printed), lets the installation
settle ``--settle`` seconds more, idle again, and measures a second time:
the target holds for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (cmdline, descendants, free_port, pss_kib, start, stop,  # noqa: E402
                           wait_port)
from bootstrap.plan import VARIABLES  # noqa: E402
from workers.queues import GROUPS, worker_groups  # noqa: E402

TARGET_MIB = 550


def boot_env(var_dir: Path, concurrency: int, simulator: bool) -> dict[str, str]:
    ours = set(VARIABLES) | {f"{name}_FILE" for name in VARIABLES}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("FW_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(VAR_DIR=str(var_dir), WEB_HOST="127.0.0.1", WEB_PORT=str(free_port()),
               REDIS_LOCAL_PORT=str(free_port()), WORKER_CONCURRENCY=str(concurrency), LOG_LEVEL="WARNING",
               SIMULATOR="true" if simulator else "false", SIMULATOR_PORT=str(free_port()))
    return env


def wait_workers(redis_port: int, count: int, timeout: float = 240.0) -> None:
    import redis

    client = redis.Redis(port=redis_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.hlen("fw:workers") >= count:
                return
        except redis.RedisError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"fewer than {count} workers wrote a heartbeat within {timeout:.0f} s")


def program_of(command: str) -> str:
    if "supervisord" in command:
        return "supervisord"
    if "redis-server" in command or "valkey" in command:
        return "redis"
    for marker, name in (("uvicorn", "web"), (" beat", "beat"), ("run_controller", "controller"),
                         ("simulator", "simulator")):
        if marker in command:
            return name
    if command.startswith("[celeryd: "):  # a prefork child names its worker: [celeryd: <group>@host:...]
        return "worker-" + command.removeprefix("[celeryd: ").split("@", 1)[0]
    if " worker " in command:
        return "worker-" + command.split(" -n ", 1)[1].split("@", 1)[0]
    return command[:40]


def stack_pss(root_pid: int) -> dict[str, tuple[int, int]]:
    """Program -> (processes, PSS KiB) over ``root_pid`` and its descendants."""
    found: dict[str, tuple[int, int]] = {}
    for pid in descendants(root_pid):
        name = program_of(cmdline(pid))
        count, kib = found.get(name, (0, 0))
        found[name] = (count + 1, kib + pss_kib(pid))
    return found


def backfill_left(var_dir: Path) -> tuple[int, int] | None:
    """(BackfillWindows not done, LogPages pending), or None before the first window is planned."""
    try:
        with sqlite3.connect(f"file:{var_dir / 'flowwatch.sqlite3'}?mode=ro", uri=True, timeout=30) as db:
            windows, open_windows = db.execute(
                "SELECT count(*), count(*) - count(done_at) FROM tenants_backfillwindow").fetchone()
            pending = db.execute("SELECT count(*) FROM messagelogs_logpage WHERE error = ''").fetchone()[0]
    except sqlite3.Error:
        return None
    return (open_windows, pending) if windows else None


def tasks_left(redis_port: int) -> int:
    """Tasks queued or taken and not yet acknowledged in the broker (the details of the
    backfilled problem messages are read after their pages are stored)."""
    import redis

    from workers.collect_keys import BrokerKeys
    from workers.queues import QUEUE_NAMES

    keys, client = BrokerKeys.from_options(), redis.Redis(port=redis_port)
    pipe = client.pipeline(transaction=False)
    for name in QUEUE_NAMES:
        for key in keys.sub_queues(name):
            pipe.llen(key)
    pipe.hlen(keys.unacked_key)
    return sum(pipe.execute())


def wait_backfill(var_dir: Path, redis_port: int, root_pid: int, timeout: float) -> tuple[float, float]:
    """Wait until the backfill is done and no task is left (the beat's periodic ones come and
    go: one moment without any is enough); returns (seconds waited, peak total PSS MiB
    sampled every 10 s)."""
    began, peak, sampled = time.monotonic(), 0.0, 0.0
    while time.monotonic() - began < timeout:
        if time.monotonic() - sampled >= 10:
            sampled = time.monotonic()
            peak = max(peak, sum(kib for _, kib in stack_pss(root_pid).values()) / 1024)
        if backfill_left(var_dir) == (0, 0) and tasks_left(redis_port) == 0:
            return time.monotonic() - began, peak
        time.sleep(1)
    raise SystemExit(f"the backfill was not done within {timeout:.0f} s: {backfill_left(var_dir)} left")


def measure_stack(args: argparse.Namespace) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """[(label, programs)]: once every worker is up, and with ``--after-backfill`` once it is done."""
    var_dir = Path(tempfile.mkdtemp(prefix="fw-bench-mem-"))
    env = boot_env(var_dir, args.concurrency, args.simulator)
    process = start([sys.executable, "boot.py", "up"], env, var_dir.parent / f"{var_dir.name}.boot.log")
    try:
        wait_port(int(env["WEB_PORT"]), process, timeout=240)
        with urllib.request.urlopen(f"http://127.0.0.1:{env['WEB_PORT']}/healthz", timeout=10):
            pass
        wait_workers(int(env["REDIS_LOCAL_PORT"]), len(worker_groups()))
        time.sleep(args.settle)
        found = [(f"{args.settle:.0f} s after every worker's heartbeat", stack_pss(process.pid))]
        if args.after_backfill:
            seconds, peak = wait_backfill(var_dir, int(env["REDIS_LOCAL_PORT"]), process.pid, args.backfill_timeout)
            time.sleep(args.settle)
            found.append((f"backfill done {seconds:.0f} s later (peak sampled {peak:.1f} MiB), "
                          f"then {args.settle:.0f} s idle", stack_pss(process.pid)))
        return found
    finally:
        stop(process, timeout=90)
        shutil.rmtree(var_dir, ignore_errors=True)


def one_worker_pss(pool: str, concurrency: int, settle: float) -> int:
    """PSS KiB of the hot group's worker alone with ``pool``, against a Redis of its own."""
    from bench.support import private_stack, python_env

    with private_stack() as (server, _var_dir, env):
        queues = ",".join(worker_groups()["hot"])
        command = [sys.executable, "-m", "workers.cli", "-A", "config", "worker", "-Q", queues, "-n", f"{pool}@%h",
                   "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "WARNING"]
        process = start(command, python_env(env), _var_dir / "worker.log")
        try:
            wait_workers(server.port, 1)
            time.sleep(settle)
            return sum(pss_kib(pid) for pid in descendants(process.pid))
        finally:
            stop(process, timeout=60)


def report(measured: list[tuple[str, dict[str, tuple[int, int]]]], pools: dict[str, int], concurrency: int) -> None:
    totals = [sum(kib for _, kib in programs.values()) / 1024 for _, programs in measured]
    for (label, programs), total in zip(measured, totals):
        print(f"-- {label}")
        print(f"{'program':<20} {'processes':>9} {'PSS MiB':>8}")
        for name, (count, kib) in sorted(programs.items(), key=lambda item: -item[1][1]):
            print(f"{name:<20} {count:>9} {kib / 1024:>8.1f}")
        print(f"{'total':<20} {sum(c for c, _ in programs.values()):>9} {total:>8.1f}")
    print("pools: " + ", ".join(f"{g.name}={g.pool}" for g in GROUPS) + f"; WORKER_CONCURRENCY={concurrency}")
    for pool, kib in pools.items():
        print(f"one worker (hot queues) with --pool {pool:<8} {kib / 1024:>6.1f} MiB")
    if "simulator" not in measured[0][1]:
        print("measured without the simulator (--no-simulator): the target counts it")
    ratios = ", ".join(f"{total / TARGET_MIB:.2f}" for total in totals)
    print(f"anchor: target {TARGET_MIB} MiB; total / target = {ratios} (target <= 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=15.0, help="idle seconds before measuring (default 15)")
    parser.add_argument("--concurrency", type=int, default=2, help="WORKER_CONCURRENCY (default 2, boot's)")
    parser.add_argument("--no-simulator", dest="simulator", action="store_false",
                        help="boot with SIMULATOR=false (the target is measured with it)")
    parser.add_argument("--no-pools", dest="pools", action="store_false",
                        help="skip the two single workers started alone with each pool")
    parser.add_argument("--after-backfill", action="store_true",
                        help="measure again once the demo history is read and the installation idle")
    parser.add_argument("--backfill-timeout", type=float, default=900.0,
                        help="seconds to wait for the backfill (default 900)")
    args = parser.parse_args()
    if args.after_backfill and not args.simulator:
        parser.error("--after-backfill needs the simulator: without it there is no backfill")
    measured = measure_stack(args)
    pools = {pool: one_worker_pss(pool, args.concurrency, 5.0) for pool in ("threads", "prefork")} if args.pools else {}
    report(measured, pools, args.concurrency)


if __name__ == "__main__":
    main()
