"""The bundled Redis frozen, full, out of connections and restarted, on the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import time
import uuid
from datetime import datetime

import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.faults.conftest import INTERVAL, report, wait_until

FREEZE_TRIES = 20
PROMISE = 2.0  # every cache-backed read answers within this long of a frozen Redis
OCCUPANCY = "/api/superadmin/occupancy/"


def broker_entry(snapshot: dict | None) -> dict:
    return next(r for r in (snapshot or {"redis": []})["redis"] if r["role"] == "broker")


def broker_events(stack) -> list[str]:
    """Messages of critical status events of the broker role, from the database."""
    done = stack.manage("shell", "-c", (
        "import json; from apps.metrics.models import MetricEvent; print(json.dumps(list("
        "MetricEvent.objects.filter(subject='redis:broker', new_status='critical', kind='status')"
        ".values_list('message', flat=True))))"))
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else []


def timed_get(stack, path: str) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = stack.get(path, timeout=10, Authorization=f"Bearer {stack.env['METRICS_API_TOKEN']}")
    return status, time.monotonic() - started


def timed_occupancy(stack, session: str) -> tuple[int, float, bool]:
    """A fresh occupancy sample: its status, its seconds, and whether it found Redis unreachable."""
    started = time.monotonic()
    status, body = stack.get(f"{OCCUPANCY}?refresh=1", timeout=10, Cookie=f"sessionid={session}")
    seconds = time.monotonic() - started
    return status, seconds, status == 200 and not any(s["reachable"] for s in json.loads(body)["servers"])


def a_drill_finishes(stack, timeout: float) -> float:
    token, started = uuid.uuid4().hex, time.monotonic()
    stack.send("workers.probe.drill", token, 0.0)
    wait_until(lambda: stack.drill_notes(token) == ["start", "done"], timeout=timeout, what="a task ran")
    return time.monotonic() - started


def test_every_cache_backed_read_answers_within_two_seconds_of_a_frozen_redis(stack):
    redis_pid = stack.pid("redis")
    session = stack.session_key()
    timings: list[tuple[str, int, float]] = []
    # /readyz and the occupancy sample read Redis through plain redis-py clients
    # (no cache, no breaker): each try pays one read timeout, never a second.
    direct: list[tuple[str, int, float]] = []
    unreachable_seen = 0
    for _ in range(FREEZE_TRIES):
        os.kill(redis_pid, signal.SIGSTOP)
        try:
            for path in ("/api/metrics/", "/metrics"):
                status, seconds = timed_get(stack, path)
                timings.append((path, status, seconds))
            direct.append(("/readyz", *timed_get(stack, "/readyz")))
            status, seconds, unreachable = timed_occupancy(stack, session)
            direct.append((OCCUPANCY, status, seconds))
            unreachable_seen += unreachable
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        time.sleep(0.5)
    slowest = max(seconds for _, _, seconds in timings)
    paid = sum(1 for _, _, seconds in timings if seconds >= 0.5)
    slowest_direct = {path: max(seconds for p, _, seconds in direct if p == path) for path in ("/readyz", OCCUPANCY)}
    report("frozen Redis (SIGSTOP) x20", reads=len(timings), slowest_s=f"{slowest:.2f}",
           paid_a_timeout=paid, skipped_by_breaker=len(timings) - paid,
           statuses=sorted({status for _, status, _ in timings + direct}),
           slowest_readyz_s=f"{slowest_direct['/readyz']:.2f}",
           slowest_occupancy_s=f"{slowest_direct[OCCUPANCY]:.2f}", occupancy_saw_it_unreachable=unreachable_seen)
    assert {status for _, status, _ in timings + direct} <= {200, 503}  # never a 500, never a hang
    assert slowest < PROMISE, timings
    assert max(slowest_direct.values()) < PROMISE, direct
    assert unreachable_seen == FREEZE_TRIES  # each sample met the frozen Redis, not a cached report
    recovered = wait_until(lambda: timed_get(stack, "/api/metrics/")[0] == 200, timeout=30, what="the API back")
    assert recovered


def test_a_full_broker_refuses_new_tasks_reports_it_and_recovers(stack):
    client = stack.broker()
    # A status still critical from an earlier fault (it clears with hysteresis) would hide the event.
    since = datetime.now().astimezone().isoformat()
    wait_until(lambda: (s := stack.snapshot()) and s["collected_at"] > since
               and broker_entry(s)["status"] != "critical", timeout=90, interval=1.0,
               what="a fresh snapshot with the broker below critical before the test")
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory", used + 4 * 1024 * 1024)
    refused, accepted, fillers = 0, [], []

    def top_up() -> None:
        """Write until Redis refuses, as a runaway backlog would; again whenever keys
        expiring elsewhere made room."""
        while True:
            try:
                client.set(f"fw-test:filler:{len(fillers)}", b"x" * 64 * 1024)
            except redis.OutOfMemoryError:
                return
            fillers.append(len(fillers))

    try:
        top_up()
        for _ in range(10):
            token = uuid.uuid4().hex
            try:
                stack.send("workers.probe.drill", token, 0.0, retry=False)
                accepted.append(token)
            except Exception as exc:  # kombu hands on Redis' own OOM refusal
                assert "maxmemory" in str(exc), repr(exc)
                refused += 1
        # The cache shares the full Redis, so the snapshot cannot be cached: read the event.
        reasons = wait_until(lambda: top_up() or broker_events(stack), timeout=3 * INTERVAL + 20, interval=1.0,
                             what="a critical event for the broker", explain=lambda: stack.log_tail("controller"))
    finally:
        client.delete(*[f"fw-test:filler:{i}" for i in range(len(fillers) + 1)])
        client.config_set("maxmemory", 0)
    restored = time.monotonic()
    seconds = a_drill_finishes(stack, timeout=60)
    # What the broker took while nearly full runs; what it refused, the sender was told about.
    wait_until(lambda: all(stack.drill_notes(t) == ["start", "done"] for t in accepted), timeout=60,
               what="every accepted task ran")
    report("broker maxmemory filled (noeviction)", tasks_sent=10, refused_at_send=refused,
           accepted_and_ran=len(accepted), tasks_lost=0, broker_events=reasons,
           task_runs_again_s=f"{time.monotonic() - restored:.1f}", one_task_s=f"{seconds:.1f}")


def fill_connections(port: int) -> list[socket.socket]:
    """Open connections until Redis refuses one (ERR max number of clients reached)."""
    held = []
    while len(held) < 500:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b"PING\r\n")
        answer = conn.recv(128)
        if not answer.startswith(b"+PONG"):
            conn.close()
            return held
        held.append(conn)
    raise AssertionError("Redis never refused a connection")


def test_maxclients_exhausted_is_reported_and_everything_recovers(stack):
    client = stack.broker()
    connected = client.info("clients")["connected_clients"]
    rejected_before = client.info("stats")["rejected_connections"]
    client.config_set("maxclients", connected + 5)
    held = fill_connections(stack.redis_port)
    failed = total = 0
    try:
        for path in ("/readyz", "/api/metrics/", "/healthz") * 5:
            total += 1
            status, _ = timed_get(stack, path)
            failed += status != 200
        reported = wait_until(lambda: (broker_entry(stack.snapshot()).get("rejected_connections") or 0)
                              > rejected_before, timeout=3 * INTERVAL + 10,
                              what="the controller reports the rejected connections")
    finally:
        for conn in held:
            conn.close()
        client.config_set("maxclients", 10000)
    restored = time.monotonic()
    wait_until(lambda: stack.get("/readyz")[0] == 200, timeout=60, what="/readyz 200 again")
    ready = time.monotonic() - restored
    seconds = a_drill_finishes(stack, timeout=60)
    report("maxclients exhausted", held_connections=len(held), requests=total, requests_failed=failed,
           rejected_reported=bool(reported), readyz_back_s=f"{ready:.1f}", one_task_s=f"{seconds:.1f}")
    assert stack.get("/healthz")[0] == 200


class Sender(threading.Thread):
    """Sends a drill every 0.1 s and watches which of them ran, until stopped."""

    def __init__(self, stack) -> None:
        super().__init__(daemon=True)
        self.stack, self.stopping = stack, threading.Event()
        self.sent: dict[str, float] = {}
        self.failed = 0
        self.runs: dict[str, list[str]] = {}

    def run(self) -> None:
        while not self.stopping.wait(0.1):
            token = uuid.uuid4().hex
            try:
                self.stack.send("workers.probe.drill", token, 0.0, retry=False)
                self.sent[token] = time.time()
            except Exception:
                self.failed += 1
            self.watch()

    def watch(self) -> None:
        try:
            for token in list(self.sent):
                notes = self.stack.drill_notes(token)
                if notes:
                    self.runs[token] = notes
        except (redis.RedisError, OSError):
            pass


async def snapshot_over_a_new_socket(stack, session: str, after: str) -> str:
    url = f"ws://127.0.0.1:{stack.web_port}/ws/superadmin/metrics/"
    headers = {"Cookie": f"sessionid={session}", "Origin": stack.url("")}
    async with connect(url, additional_headers=headers, open_timeout=30) as ws:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 4 * INTERVAL))
            if frame["type"] == "snapshot" and frame["snapshot"]["collected_at"] > after:
                return frame["snapshot"]["collected_at"]


class OpenPage(threading.Thread):
    """A metrics websocket opened before the restart: it must get a snapshot
    collected after it, or be closed (4503) so that the page reconnects;
    never stay open and silently starved."""

    def __init__(self, stack, session: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.session = stack, session
        self.opened, self.after = threading.Event(), threading.Event()
        self.after_iso = ""
        self.fed_after: str | None = None
        self.close_code: int | None = None

    def run(self) -> None:
        asyncio.run(self.watch())

    async def watch(self) -> None:
        url = f"ws://127.0.0.1:{self.stack.web_port}/ws/superadmin/metrics/"
        headers = {"Cookie": f"sessionid={self.session}", "Origin": self.stack.url("")}
        try:
            async with connect(url, additional_headers=headers, open_timeout=30) as ws:
                self.opened.set()
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 60 + 4 * INTERVAL))
                    if (self.after.is_set() and frame["type"] == "snapshot"
                            and frame["snapshot"]["collected_at"] > self.after_iso):
                        self.fed_after = frame["snapshot"]["collected_at"]
                        return
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else 1006
        except TimeoutError:
            pass  # open, and nothing after the restart: starved


def test_redis_restarted_while_tasks_flow(stack):
    session = stack.session_key()
    page = OpenPage(stack, session)
    page.start()
    assert page.opened.wait(30), "the page's websocket did not open"
    sender = Sender(stack)
    sender.start()
    time.sleep(3)
    restart_wall = time.time()
    page.after_iso = datetime.fromtimestamp(restart_wall).astimezone().isoformat()
    page.after.set()
    output = stack.supervisorctl("restart", "redis")
    restarted, back_wall = time.monotonic(), time.time()
    time.sleep(8)
    sender.stopping.set()
    sender.join(30)
    time.sleep(3)
    sender.watch()
    after = datetime.fromtimestamp(restart_wall).astimezone().isoformat()
    collected = asyncio.run(snapshot_over_a_new_socket(stack, session, after))
    to_socket = time.monotonic() - restarted
    # Sent while supervisorctl restarted it: into the old server or the new one, by luck.
    before = [t for t, at in sender.sent.items() if at < restart_wall]
    during = [t for t, at in sender.sent.items() if restart_wall <= at < back_wall]
    later = [t for t, at in sender.sent.items() if at >= back_wall]
    lost = [t for t in before if t not in sender.runs]
    first_run_after = min((at for t, at in sender.sent.items() if at >= back_wall and t in sender.runs),
                          default=None)
    events = [e for e in stack.snapshot()["events"] if e["kind"] == "restart"]
    page.join(60 + 4 * INTERVAL)
    report("Redis restarted while tasks flow", sent=len(sender.sent), send_failed=sender.failed,
           sent_before=len(before), lost_with_the_restart=len(lost), sent_while_restarting=len(during),
           lost_while_restarting=sum(1 for t in during if t not in sender.runs),
           ran_after=sum(1 for t in later if t in sender.runs), not_run_after=sum(1 for t in later
                                                                                  if t not in sender.runs),
           repeated=sum(1 for notes in sender.runs.values() if notes.count("start") > 1),
           first_task_after_s=f"{first_run_after - restart_wall:.1f}" if first_run_after else None,
           snapshot_on_websocket_s=f"{to_socket:.1f}", restart_events=len(events),
           open_page="fed after the restart" if page.fed_after else f"closed {page.close_code}"
           if page.close_code else "starved", supervisorctl=output.strip())
    assert page.fed_after or page.close_code == 4503, "a page open across the restart was left without snapshots"
    assert all(t in sender.runs for t in later), "a task accepted after the restart was lost"
    assert not any(notes.count("start") > 1 for notes in sender.runs.values())
    assert events and collected > after
