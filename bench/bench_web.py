"""Benchmark: Django's /healthz and /api/metrics/ against a bare ASGI app on the same server and flags.

    .venv/bin/python bench/bench_web.py [--seconds 3] [--rounds 3] [--clients 50]

It starts a private Redis, migrates a private SQLite under a temporary
VAR_DIR, runs one controller tick (so /api/metrics/ has a real snapshot),
then starts the web program twice from its own command in supervisord.conf
on free loopback ports: once as it is, once with ``bench.bare_asgi:app`` in
place of Flowwatch's application.  A small asyncio client keeps 1 or N
keep-alive connections busy for a bounded time and count; the scenarios run
interleaved for ``--rounds`` rounds and the medians are printed with the
ratios the targets are about:

* /healthz at 1 client       >= 0.4 x the bare app at 1 client (the bare app's
  ``/thread``, which makes the one hand-over to a thread that Flowwatch makes
  per request, shows what that hand-over alone costs);
* /api/metrics/ at N clients >= 0.8 x /healthz at N clients;
* /api/metrics/ p99 at N clients < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (free_port, manage, private_stack, python_env, start, stop,  # noqa: E402
                           supervisor_command, wait_port)

TOKEN = "bench-token-not-a-secret"
MAX_REQUESTS = 200_000  # per scenario, whatever the time


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def request_bytes(path: str, token: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def one_client(port: int, raw: bytes, stop_at: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at and result.requests < MAX_REQUESTS:
            started = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            result.latencies.append(time.perf_counter() - started)
            result.requests += 1
            if not head.startswith(b"HTTP/1.1 200"):
                result.errors += 1
    finally:
        writer.close()


async def load(port: int, path: str, clients: int, seconds: float, token: str | None) -> Result:
    raw = request_bytes(path, token)
    warm = Result()
    await asyncio.gather(*(one_client(port, raw, time.perf_counter() + 0.3, warm) for _ in range(clients)))
    result = Result()
    started = time.perf_counter()
    await asyncio.gather(*(one_client(port, raw, started + seconds, result) for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def web_values(env: dict[str, str], port: int) -> dict[str, str]:
    return {**python_env(env), "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port)}


def run(args: argparse.Namespace) -> None:
    with private_stack(METRICS_API_TOKEN=TOKEN) as (_server, var_dir, env):
        manage(env, "migrate", "--run-syncdb", "-v", "0")
        manage(env, "run_controller", "--once")
        ports = {"flowwatch": free_port(), "bare": free_port()}
        commands = {name: supervisor_command("web", web_values(env, port)) + args.extra.split()
                    for name, port in ports.items()}
        commands["bare"] = [part.replace("config.asgi:application", "bench.bare_asgi:app")
                            for part in commands["bare"]]
        print("web command:", " ".join(commands["flowwatch"][1:]))
        processes = {name: start(command, python_env(env), var_dir / f"{name}.log")
                     for name, command in commands.items()}
        try:
            for name, port in ports.items():
                wait_port(port, processes[name])
            report(measure(ports, args))
        finally:
            for process in processes.values():
                stop(process)


SCENARIOS = (
    ("bare /", "bare", "/", 1),
    ("bare /thread", "bare", "/thread", 1),
    ("/healthz", "flowwatch", "/healthz", 1),
    ("bare / N", "bare", "/", 0),
    ("/healthz N", "flowwatch", "/healthz", 0),
    ("/api/metrics/ N", "flowwatch", "/api/metrics/", 0),
)


def measure(ports: dict[str, int], args: argparse.Namespace) -> dict[str, list[Result]]:
    results: dict[str, list[Result]] = {name: [] for name, *_ in SCENARIOS}
    for _ in range(args.rounds):  # interleaved: a noisy neighbour hurts every scenario alike
        for name, target, path, clients in SCENARIOS:
            token = TOKEN if path.startswith("/api/") else None
            result = asyncio.run(load(ports[target], path, clients or args.clients, args.seconds, token))
            if result.errors:
                raise SystemExit(f"{name}: {result.errors} answers were not 200")
            results[name].append(result)
    return results


def report(results: dict[str, list[Result]]) -> None:
    def median(name: str, figure) -> float:
        return statistics.median(figure(r) for r in results[name])

    print(f"{'scenario':<17} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name in results:
        print(f"{name:<17} {median(name, lambda r: r.rate):>8.0f} {median(name, lambda r: r.quantile(.5)) * 1e3:>8.2f}"
              f" {median(name, lambda r: r.quantile(.99)) * 1e3:>8.2f}")
    rate = {name: median(name, lambda r: r.rate) for name in results}
    p99 = median("/api/metrics/ N", lambda r: r.quantile(.99)) * 1e3
    print(f"anchor: bare ASGI app at 1 client {rate['bare /']:.0f} req/s")
    print(f"/healthz / bare (1 client)            = {rate['/healthz'] / rate['bare /']:.2f} (target >= 0.4)")
    print(f"bare with one thread hand-over / bare = {rate['bare /thread'] / rate['bare /']:.2f}"
          " (the hand-over alone, 1 client)")
    print(f"/healthz / bare (N clients)           = {rate['/healthz N'] / rate['bare / N']:.2f}")
    print(f"/api/metrics/ / /healthz (N clients)  = {rate['/api/metrics/ N'] / rate['/healthz N']:.2f} (target >= 0.8)")
    print(f"/api/metrics/ p99 at N clients        = {p99:.1f} ms (target < 100)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50, help="N, the concurrent clients (default 50)")
    parser.add_argument("--extra", default="", help="more uvicorn flags for both servers, e.g. \"--workers 2\"")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
