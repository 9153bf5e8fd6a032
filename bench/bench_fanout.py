"""Benchmark: a snapshot fanned out to 1000 metrics websockets on one web process.

Run by hand, never by the test suite (it asserts nothing about time):

    .venv/bin/python bench/bench_fanout.py [--sockets 1000] [--snapshots 10]

It starts a private redis-server and, one after the other, two uvicorn
servers with the flags of supervisord.conf's web program, on free loopback
ports:

* flowwatch — ``config.asgi:application``: the real consumers behind session
  authentication, fed by the controller's publisher path (the snapshot
  encoded once, ``{"type": "metrics.snapshot", "frame": ...}`` to the group);
  the web process is ONE group member (apps/dashboard/hub.py), which hands
  the frame to every socket in memory;
* anchor    — ``bench.fanout_anchor:application``: bare channels-redis (with the
  same waiting pool), one channel and one group member per socket, each
  forwarding the same pre-encoded frame: ``group_send`` to N channels plus one
  send per socket.

Each server gets ``--sockets`` websockets, opened in waves of 100 (all must
open; one the server closes is opened again, as the page would), then
``--snapshots`` snapshots of the real size (~19 KB), one a second. The latency of a socket is the time from just before ``group_send``
to the frame's arrival in the client; it prints p50, p99 and the worst over
every socket and snapshot, whether permessage-deflate was negotiated, and
the ratio of the p99s.

On this project's 2-core machine, shared with other work (noisy: the two
servers are measured a minute apart, so a change of load falls on one side;
the client's own inflating of 1000 frames is part of both figures):

    1000 sockets, 10 snapshots of 18474 bytes each
    server      frames   p50 ms   p99 ms   max ms  deflate  reopened
    flowwatch    10000    168.1    385.4    401.4     1000         0
    anchor       10000    362.7    623.4    637.4     1000         0
    p99 ratio flowwatch / anchor: 0.62x

(docs/performance.md, "Fan-out", has three runs and the design behind them.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_collect import PrivateRedis, free_port  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from workers.queues import QUEUE_NAMES  # noqa: E402

MARK = '"collected_at": "'
# Sockets opened at once.  Each handshake reads the session and the user
# through one database thread (and, for the anchor, joins the group through
# the channels Redis): 1000 at once on a busy 2-core machine outlast
# uvicorn's 10 s handshake limit or the layer's connect timeout
# (docs/performance.md, "Fan-out"); the page retries such a close with backoff.
WAVE = 100


def fake_snapshot(sent_at: float) -> dict:
    """A snapshot about the size of a real one (~19 KB): every declared queue, four roles, 35 events."""
    queue = {"name": "messagelog_read", "lane": "read", "group": "messagelog", "depth": 12,
             "by_priority": {"0": 12}, "oldest_age_seconds": 1.5, "consumers": 1, "processed_per_minute": 40.0,
             "processed_total": 1234, "warn": 1000, "critical": 5000, "status": "ok", "reasons": []}
    role = {"role": "broker", "host": "127.0.0.1", "port": 6379, "db": 0, "tls": False, "shared_with": [],
            "reachable": True, "error": None, "used_memory": 1234567, "maxmemory": 0, "memory_percent": None,
            "no_maxmemory": True, "reasons": ["no maxmemory set"] * 3, "status": "warn"}
    event = {"id": 1, "at": "2026-01-01T00:00:00+00:00", "kind": "status", "subject": "queue:ai",
             "old_status": "ok", "new_status": "warn", "message": "queue ai is warn (was ok): no consumer " * 3,
             "details": {"reasons": ["no consumer"] * 4}}
    return {"collected_at": f"{sent_at:.6f}", "duration_ms": 2.1, "queues": [queue] * len(QUEUE_NAMES), "unacked": {},
            "redis": [role] * 4, "workers": [], "thresholds": {"queue_warn": 1000}, "events": [event] * 35,
            "database": {"reachable": True, "error": None}, "controller": {"interval": 5.0}}


def environment(redis_url_base: str, var_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "REDIS_", "CHANNELS_"))}
    env.update(VAR_DIR=var_dir, REDIS_LOCAL="false", DJANGO_SETTINGS_MODULE="config.settings",
               CELERY_BROKER_URL=f"{redis_url_base}/0", CELERY_RESULT_BACKEND=f"{redis_url_base}/1",
               REDIS_CACHE_URL=f"{redis_url_base}/2", CHANNELS_REDIS_URL=f"{redis_url_base}/3",
               BENCH_CHANNELS_URL=f"{redis_url_base}/3", PYTHONPATH=str(ROOT))
    return env


def session_for_superadmin(env: dict[str, str]) -> str:
    manage = [sys.executable, "manage.py"]
    subprocess.run(manage + ["migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    done = subprocess.run(manage + ["shell", "-c", (
        "from django.contrib.auth import get_user_model; from django.test import Client; "
        "u, _ = get_user_model().objects.get_or_create(username='bench', defaults={'is_superuser': True, "
        "'is_staff': True}); c = Client(); c.force_login(u); print(c.cookies['sessionid'].value)")],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def start_uvicorn(app: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
               "--ws", "websockets-sansio", "--lifespan", "off", "--timeout-graceful-shutdown", "10",
               "--log-level", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=env)


async def open_all(port: int, sockets: int, session: str) -> list:
    url = f"ws://127.0.0.1:{port}/ws/superadmin/metrics/"
    headers = {"Cookie": f"sessionid={session}", "Origin": f"http://127.0.0.1:{port}"}
    for _ in range(100):  # the server is starting
        try:
            probe = await connect(url, additional_headers=headers, open_timeout=5)
            await probe.close()
            break
        except OSError:
            await asyncio.sleep(0.2)
    opened: list = []
    while len(opened) < sockets:  # in waves: a burst of 1000 handshakes is not what is measured here
        wave = min(WAVE, sockets - len(opened))
        opened += await asyncio.gather(*(connect(url, additional_headers=headers, open_timeout=120,
                                                 max_size=2**24) for _ in range(wave)))
    return opened


async def drain_and_reopen(opened: list, port: int, session: str) -> int:
    """Drop what came on connect; a socket the server closed reconnects, as the page does.

    On a busy machine some of 1000 simultaneous joins outlast the channels
    Redis connect timeout and are closed with 4503; the page retries such a
    close with backoff, so the benchmark does too (once, after the burst).
    """
    reopened = 0
    for index, socket in enumerate(opened):
        while True:
            try:
                await asyncio.wait_for(socket.recv(), 0.01)
            except asyncio.TimeoutError:
                break
            except ConnectionClosed:
                opened[index] = (await open_all(port, 1, session))[0]
                reopened += 1
                break
    return reopened


async def receive_until(socket, sent_at: float, latencies: list[float]) -> None:
    while True:
        frame = await asyncio.wait_for(socket.recv(), 60)
        at = frame.find(MARK)
        if at >= 0 and float(frame[at + len(MARK):frame.index('"', at + len(MARK))]) == round(sent_at, 6):
            latencies.append(time.time() - sent_at)
            return


async def measure(port: int, sockets: int, snapshots: int, session: str) -> dict:
    from channels.layers import get_channel_layer

    from apps.metrics.snapshot import GROUP, MESSAGE_TYPE, encode

    layer = get_channel_layer()
    # The publisher's connection first, while the machine is calm: made during the
    # fan-out, a busy loop can miss the layer's 0.75 s connect timeout.
    await layer.group_discard(GROUP, "bench.warm!up")
    opened = await open_all(port, sockets, session)
    await asyncio.sleep(2)  # every consumer has joined and sent its first frame
    reopened = await drain_and_reopen(opened, port, session)
    if reopened:
        await asyncio.sleep(1)
        await drain_and_reopen(opened, port, session)
    latencies: list[float] = []
    for _ in range(snapshots):
        sent_at = round(time.time(), 6)
        frame = encode(fake_snapshot(sent_at)).frame
        waiting = [asyncio.create_task(receive_until(s, sent_at, latencies)) for s in opened]
        await layer.group_send(GROUP, {"type": MESSAGE_TYPE, "frame": frame})
        await asyncio.gather(*waiting)
        await asyncio.sleep(1)
    deflate = sum("permessage-deflate" in (s.response.headers.get("Sec-WebSocket-Extensions") or "")
                  for s in opened)
    await asyncio.gather(*(s.close() for s in opened))
    latencies.sort()
    return {"frames": len(latencies), "p50": statistics.median(latencies),
            "p99": latencies[int(0.99 * (len(latencies) - 1))], "max": latencies[-1], "deflate": deflate,
            "bytes": len(frame), "reopened": reopened}


def run(name: str, app: str, env: dict[str, str], args: argparse.Namespace, session: str) -> dict:
    port = free_port()
    server = start_uvicorn(app, port, env)
    try:
        return asyncio.run(measure(port, args.sockets, args.snapshots, session))
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=10)
    args = parser.parse_args()
    server = PrivateRedis()
    var_dir = tempfile.mkdtemp(prefix="fw-bench-fanout-")
    try:
        env = environment(server.url.rsplit("/", 1)[0], var_dir)
        os.environ.update(env)
        import django

        django.setup()
        session = session_for_superadmin(env)
        results = {"flowwatch": run("flowwatch", "config.asgi:application", env, args, session),
                   "anchor": run("anchor", "bench.fanout_anchor:application", env, args, session)}
    finally:
        server.close()
    print(f"{args.sockets} sockets, {args.snapshots} snapshots of {results['anchor']['bytes']} bytes each")
    print(f"{'server':<10} {'frames':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'deflate':>8} {'reopened':>9}")
    for name, found in results.items():
        print(f"{name:<10} {found['frames']:>7} {found['p50'] * 1000:>8.1f} {found['p99'] * 1000:>8.1f} "
              f"{found['max'] * 1000:>8.1f} {found['deflate']:>8} {found['reopened']:>9}")
    print(f"p99 ratio flowwatch / anchor: {results['flowwatch']['p99'] / results['anchor']['p99']:.2f}x")


if __name__ == "__main__":
    main()
