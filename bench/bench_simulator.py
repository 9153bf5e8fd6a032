"""Benchmark: the tenant simulator's own serving rate, in messages per second.

Run by hand, never by the test suite (it asserts nothing about time):

    .venv/bin/python bench/bench_simulator.py [--messages 100000] [--rate 10000] [--readers 1]
                                              [--url http://host:port/api/v1 --user U --password P]

Without ``--url`` it starts ``python -m simulator`` on a free loopback port with
``--rate`` messages per minute and just enough history for ``--messages``, and
stops it at the end. It then reads one LogEnd window holding about
``--messages`` messages the way an incremental reader does: ``$filter`` on
LogEnd, ``$orderby=LogEnd``, pages of 1000, following the relative ``__next``.

It prints, for that read:

* raw      — httpx on one kept connection, body bytes only: the simulator's
             serving rate, the ceiling any ingest pipeline can reach;
* client   — the same pages through ``TenantClient.message_logs`` and
             ``parse_log``: what the Flowwatch reader adds on top;
* parallel — ``--readers`` raw readers on disjoint windows at once (the
             simulator is one process, so this shows where it saturates).

The first page of a window is slower (the simulator generates and sorts the
window once, then serves the pages from that result).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from apps.tenants.client import TenantClient, TenantConfig, datetime_literal, parse_log  # noqa: E402
from tests.servers import free_port  # noqa: E402

USER, PASSWORD = "bench", "bench-secret"


def start_simulator(rate: int, messages: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # Twice the needed history, so that the window read below is full.
    days = 2 * messages / rate / 1440
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIMULATOR_PORT": str(port), "SIMULATOR_RATE_LIMIT": "0",
           "SIMULATOR_MESSAGES_PER_MINUTE": str(rate), "SIMULATOR_HISTORY_DAYS": f"{days:.6f}",
           "SIMULATOR_CLIENT_ID": USER, "SIMULATOR_CLIENT_SECRET": PASSWORD}
    log = open(Path(tempfile.mkdtemp(prefix="fw-bench-sim-")) / "simulator.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "simulator"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/_sim/health", timeout=1).status_code == 200:
                return process, f"{base}/api/v1"
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the simulator did not start; see " + log.name)


def windows(messages: int, rate: int, count: int) -> list[tuple[datetime, datetime]]:
    """``count`` disjoint LogEnd windows of about ``messages`` each, ending a minute ago."""
    length = timedelta(minutes=messages / rate)
    end = datetime.now(timezone.utc) - timedelta(minutes=1)
    return [(end - length * (n + 1), end - length * n) for n in range(count)]


def read_raw(url: str, start: datetime, end: datetime) -> tuple[int, float, float]:
    """(messages, seconds, first page seconds) following __next on one connection."""
    params = {"$filter": f"LogEnd ge {datetime_literal(start)} and LogEnd lt {datetime_literal(end)}",
              "$orderby": "LogEnd", "$top": "1000", "$format": "json"}
    total, first = 0, 0.0
    with httpx.Client(auth=(USER, PASSWORD), timeout=120) as client:
        began = time.perf_counter()
        response = client.get(f"{url}/MessageProcessingLogs", params=params)
        first = time.perf_counter() - began
        while True:
            response.raise_for_status()
            body = response.json()["d"]
            total += len(body["results"])
            if not body.get("__next"):
                break
            response = client.get(urljoin(url + "/", body["__next"]))
        return total, time.perf_counter() - began, first


def read_client(url: str, start: datetime, end: datetime) -> tuple[int, float]:
    config = TenantConfig("bench", url, "basic", client_id=USER, client_secret=PASSWORD, read_timeout=120)
    began, total = time.perf_counter(), 0
    with TenantClient(config) as client:
        for page in client.message_logs(start, end):
            total += len([parse_log(entry) for entry in page.entries])
    return total, time.perf_counter() - began


def read_parallel(url: str, spans: list[tuple[datetime, datetime]]) -> tuple[int, float]:
    results: list[tuple[int, float, float]] = []
    threads = [threading.Thread(target=lambda s=s: results.append(read_raw(url, *s))) for s in spans]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(r[0] for r in results), time.perf_counter() - began


def main() -> None:
    global USER, PASSWORD
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=10_000, help="SIMULATOR_MESSAGES_PER_MINUTE")
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="an already running simulator's /api/v1 root")
    parser.add_argument("--user", default=USER)
    parser.add_argument("--password", default=PASSWORD)
    args = parser.parse_args()
    USER, PASSWORD = args.user, args.password
    process, url = (None, args.url) if args.url else start_simulator(args.rate, args.messages * max(1, args.readers))
    try:
        report(url, args)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)


def report(url: str, args: argparse.Namespace) -> None:
    span = windows(args.messages, args.rate, 1)[0]
    raw = [read_raw(url, *span) for _ in range(args.repeat)]
    rates = [count / seconds for count, seconds, _ in raw]
    print(f"window: {raw[0][0]} messages, pages of 1000, {args.repeat} runs")
    print(f"raw      {statistics.median(rates):>9,.0f} messages/s  (median; min {min(rates):,.0f}, "
          f"max {max(rates):,.0f}; first page {statistics.median(r[2] for r in raw) * 1000:.0f} ms)")
    count, seconds = read_client(url, *span)
    print(f"client   {count / seconds:>9,.0f} messages/s  (TenantClient + parse_log; "
          f"{count / seconds / statistics.median(rates):.2f}x raw)")
    if args.readers > 1:
        count, seconds = read_parallel(url, windows(args.messages, args.rate, args.readers))
        print(f"parallel {count / seconds:>9,.0f} messages/s  ({args.readers} readers on disjoint windows, "
              f"{count / seconds / statistics.median(rates):.2f}x raw)")


if __name__ == "__main__":
    main()
