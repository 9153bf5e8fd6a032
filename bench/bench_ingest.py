"""Benchmark: message logs from the simulator to the database, through the real queue families.

Run by hand, never by the test suite (it asserts nothing about time):

    .venv/bin/python bench/bench_ingest.py [--messages 100000] [--rate 1000] [--follow 30]
                                           [--concurrency 2] [--pool group] [--window 600]
                                           [--profile DIR]

It starts, each on a free loopback port and in a temporary VAR_DIR (SQLite):
a private redis-server, ``python -m simulator`` holding about ``--messages``
messages of history at ``--rate`` messages per minute, one ``celery worker``
per worker group of workers/queues.py (with the group's own pool, as supervisor
runs it, unless ``--pool`` says otherwise; ``--concurrency`` threads or processes each) and
``celery beat``; then registers the simulator as a tenant, so the first beat
tick onboards it. It prints

* tick     — how long after its start beat's first tick came (its start-up and
  one interval of periodic_run, 15 s: not counted; the tick is when
  periodic_run claims the tenant, its ``last_poll_at``);
* backfill — messages stored / seconds from the first tick until every
  backfill window is read and every staged page stored;
* details  — seconds until every FAILED, ESCALATED and RETRY message has its
  error text and attachments;
* ingest   — messages stored / seconds from the first tick until the details
  are complete too: the pipeline's rate for the whole job (and, in brackets,
  counted from beat's start, as the script did before it read the tick);
* serving  — the anchor: the simulator's own rate for the same work read raw
  by a bare httpx client (the same backfill windows with the same $filter,
  $orderby, $top, $expand and $select, plus the two detail calls per problem message),
  on ``--concurrency`` threads with a kept connection each, storing nothing;
  and ``ratio``, ingest / serving;
* pages    — the simulator's raw rate for the list pages alone (one
  connection, the whole history in one paged read): a second, higher anchor;
* follow   — messages stored per second over ``--follow`` seconds of live
  traffic, beside the simulator's live rate;
* CPU seconds per process (simulator, each worker group, beat, Redis) until
  the details were complete and over the whole run: where the time went.

With ``--profile DIR``, py-spy (``PY_SPY``, else ``py-spy`` on the PATH)
samples the simulator and every worker group from their start until the
details are complete, without pausing them (``--nonblocking``), and leaves
one collapsed-stack file per process in DIR (``worker-cold.txt`` ...; open
them in speedscope, or sum them with ``bench/profile_summary.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from apps.tenants.client import _key, _query, datetime_literal  # noqa: E402  (plain Python, no Django)
from apps.tenants.odata import LOG_FIELDS, LOG_PAGE_SIZE  # noqa: E402  (what apps.messagelogs.reading asks for)
from tests.servers import RedisServer, free_port, stop_group  # noqa: E402
from workers.queues import BY_GROUP, worker_groups  # noqa: E402

USER, PASSWORD = "bench", "bench-secret"
EXPAND = "CustomHeaderProperties"  # what apps.messagelogs.reading asks to come inline with a page
PROBLEMS = "('FAILED', 'ESCALATED', 'RETRY')"
CREATE_TENANT = (
    "from apps.tenants.models import Tenant; "
    "t = Tenant(name='simulator', api_url='{url}', auth='oauth', token_url='{token}', client_id='{user}', "
    "poll_interval=5, backfill_days={days}); t.set_secret('{password}'); t.save()"
)


def clock_ticks(pid: int) -> float:
    """CPU seconds of a process and its reaped children (utime, stime, cutime, cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants."""
    total = clock_ticks(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        total += sum(tree_cpu(int(child)) for child in children.read_text().split())
    return total


class Stack:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.var = Path(tempfile.mkdtemp(prefix="fw-bench-ingest-"))
        self.redis = RedisServer()
        self.sim_port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.profilers: list[subprocess.Popen] = []
        self.history_days = args.messages / args.rate / 1440

    def pool(self, group: str) -> str:
        """The group's own pool (as boot.py writes it for supervisor), unless --pool names one for all."""
        return BY_GROUP[group].pool if self.args.pool == "group" else self.args.pool

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "VAR_DIR": str(self.var), "REDIS_LOCAL": "false",
                "REDIS_LOCAL_PORT": str(self.redis.port), "DJANGO_SETTINGS_MODULE": "config.settings",
                "MESSAGELOG_BACKFILL_WINDOW_SECONDS": str(self.args.window), "LOG_LEVEL": "WARNING"}

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.var / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=env or self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> None:
        self.redis.start()
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        self.spawn("simulator", [sys.executable, "-m", "simulator"], {
            **self.env, "SIMULATOR_HOST": "127.0.0.1", "SIMULATOR_PORT": str(self.sim_port),
            "SIMULATOR_MESSAGES_PER_MINUTE": str(self.args.rate), "SIMULATOR_HISTORY_DAYS": f"{self.history_days:.6f}",
            "SIMULATOR_RATE_LIMIT": "0", "SIMULATOR_CLIENT_ID": USER, "SIMULATOR_CLIENT_SECRET": PASSWORD})
        for group, queues in worker_groups().items():
            self.spawn(f"worker-{group}", [sys.executable, "-m", "workers.cli", "-A", "config", "worker", "-Q",
                                           ",".join(queues), "-n", f"{group}@%h", "-P", self.pool(group),
                                           "-c", str(self.args.concurrency),
                                           "--without-mingle", "--without-gossip", "-l", "WARNING"])
        self.wait_for_simulator()
        if self.args.profile:
            self.start_profilers(Path(self.args.profile))
        base = f"http://127.0.0.1:{self.sim_port}"
        subprocess.run([sys.executable, "manage.py", "shell", "-c", CREATE_TENANT.format(
            url=f"{base}/api/v1", token=f"{base}/oauth/token", user=USER, password=PASSWORD,
            days=max(1, int(self.history_days) + 1))], cwd=ROOT, env=self.env, check=True, capture_output=True)
        time.sleep(5)  # the workers connect before the first tick
        self.spawn("beat", [sys.executable, "-m", "workers.cli", "-A", "config", "beat", "-l", "WARNING",
                            "-s", str(self.var / "beat-schedule")])

    def start_profilers(self, folder: Path) -> None:
        """py-spy on the simulator and every worker (and their children), until stop_profilers."""
        folder.mkdir(parents=True, exist_ok=True)
        py_spy = os.environ.get("PY_SPY", "py-spy")
        for name, process in self.processes.items():
            self.profilers.append(subprocess.Popen(
                [py_spy, "record", "--subprocesses", "--rate", "100", "--format", "raw",
                 "-p", str(process.pid), "-o", str(folder / f"{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=(folder / f"{name}.py-spy.log").open("wb")))

    def stop_profilers(self) -> None:
        for profiler in self.profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for profiler in self.profilers:
            try:
                profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                profiler.kill()
        self.profilers = []

    def wait_for_simulator(self) -> None:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{self.sim_port}/_sim/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the simulator did not start")

    def query(self, sql: str) -> int:
        return self.rows(sql)[0][0] or 0

    def rows(self, sql: str) -> list[tuple]:
        with sqlite3.connect(f"file:{self.var / 'flowwatch.sqlite3'}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql).fetchall()

    def stop(self) -> None:
        self.stop_profilers()
        for process in self.processes.values():
            stop_group(process, timeout=30)
        self.redis.close()


def wait(condition, timeout: float, label: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"{label} not reached within {timeout} s")


def first_tick(stack: Stack) -> float:
    """time.monotonic() of beat's first tick: when periodic_run claimed the tenant (its last_poll_at)."""
    wait(lambda: stack.query("SELECT count(*) FROM tenants_tenant WHERE last_poll_at IS NOT NULL") > 0, 120,
         "the first tick")
    claimed = datetime.fromisoformat(stack.rows("SELECT min(last_poll_at) FROM tenants_tenant")[0][0])
    ago = time.time() - claimed.replace(tzinfo=claimed.tzinfo or timezone.utc).timestamp()
    return time.monotonic() - ago


def _token_headers(client: httpx.Client, base: str) -> dict[str, str]:
    token = client.post(f"{base}/oauth/token?grant_type=client_credentials", auth=(USER, PASSWORD)).json()
    return {"Authorization": f"Bearer {token['access_token']}", "Accept": "application/json"}


def pages_only_rate(stack: Stack) -> tuple[int, float]:
    """Entries and seconds for a raw paged read of the whole history (one kept connection, list pages only)."""
    base = f"http://127.0.0.1:{stack.sim_port}"
    with httpx.Client(timeout=60) as client:
        headers = _token_headers(client, base)
        start = (datetime.now(timezone.utc) - timedelta(days=stack.history_days + 0.01)).strftime("%Y-%m-%dT%H:%M:%S")
        url = f"{base}/api/v1/MessageProcessingLogs?$filter=LogEnd ge datetime'{start}'&$orderby=LogEnd&$top=1000"
        entries, began = 0, time.monotonic()
        while url:
            body = client.get(url, headers=headers).json()["d"]
            entries += len(body["results"])
            url = body.get("__next") and httpx.URL(f"{base}/api/v1/").join(body["__next"])
        return entries, time.monotonic() - began


class SameWork:
    """The simulator's serving rate for the work the pipeline asked of it, read raw.

    The backfill windows the pipeline read (its $filter, $orderby, $top,
    $expand and $select, newest window first, following __next), then for every problem
    message the calls the details lanes make (error text and attachments),
    50 messages a job as the details tasks take them.  ``concurrency``
    threads, each with one kept connection, as the cold worker's threads;
    nothing is stored and nothing queued: the answers are parsed and dropped.
    """

    def __init__(self, stack: Stack, concurrency: int) -> None:
        self.base = f"http://127.0.0.1:{stack.sim_port}"
        self.concurrency = concurrency
        self.local = threading.local()
        self.windows = stack.rows("SELECT start, \"end\" FROM tenants_backfillwindow ORDER BY \"end\" DESC")
        self.guids = [g for (g,) in stack.rows(f"SELECT guid FROM messagelogs_messagelog WHERE status IN {PROBLEMS}")]
        self.entries = 0
        self.calls = 0

    def client(self) -> tuple[httpx.Client, dict[str, str]]:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(timeout=60)
            self.local.headers = _token_headers(self.local.client, self.base)
        return self.local.client, self.local.headers

    def window(self, start: str, end: str) -> None:
        client, headers = self.client()
        params = {"$filter": f"LogEnd ge {literal(start)} and LogEnd lt {literal(end)}", "$orderby": "LogEnd",
                  "$top": str(LOG_PAGE_SIZE), "$format": "json", "$expand": EXPAND, "$select": ",".join(LOG_FIELDS)}
        url = httpx.URL(f"{self.base}/api/v1/MessageProcessingLogs?{_query(params)}")
        while url:
            body = json.loads(client.get(url, headers=headers).content)["d"]
            self.entries += len(body["results"])
            url = body.get("__next") and url.join(body["__next"])

    def details(self, guids: list[str]) -> None:
        client, headers = self.client()
        for guid in guids:
            root = f"{self.base}/api/v1/MessageProcessingLogs{_key(guid)}"
            # A 404 is an answer too (a message aged out of the history meanwhile), as for the pipeline.
            for response in (client.get(f"{root}/ErrorInformation/$value", headers=headers),
                             client.get(f"{root}/Attachments?$format=json", headers=headers)):
                if response.status_code not in (200, 404):
                    response.raise_for_status()
                if response.headers.get("content-type", "").startswith("application/json"):
                    json.loads(response.content)
            self.calls += 2

    def run(self) -> float:
        began = time.monotonic()
        with ThreadPoolExecutor(self.concurrency) as pool:
            jobs = [pool.submit(self.window, start, end) for start, end in self.windows]
            jobs += [pool.submit(self.details, self.guids[i:i + 50]) for i in range(0, len(self.guids), 50)]
            for job in jobs:
                job.result()
        return time.monotonic() - began


def literal(stored: str) -> str:
    """A window bound as SQLite stores it ('2026-11-27 10:00:00.123456') -> the client's datetime literal."""
    moment = datetime.fromisoformat(stored)
    return datetime_literal(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))


def run(stack: Stack, args: argparse.Namespace) -> None:
    stored = "SELECT count(*) FROM messagelogs_messagelog"
    began = time.monotonic()
    pools = ", ".join(f"{group} {stack.pool(group)}" for group in worker_groups())
    print(f"workers   {pools}; concurrency {args.concurrency}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    stack.start()
    beat_started = time.monotonic()
    ticked = first_tick(stack)
    print(f"tick      beat's first tick {ticked - beat_started:.1f} s after it started (beat's start-up and its "
          "first interval: not counted)")
    wait(lambda: stack.query("SELECT count(*) FROM tenants_backfillwindow") > 0, 120, "onboarding")
    wait(lambda: stack.query("SELECT count(*) FROM tenants_backfillwindow WHERE done_at IS NULL") == 0
         and stack.query("SELECT count(*) FROM messagelogs_logpage WHERE error = ''") == 0, 1800, "backfill")
    backfill_seconds, backfilled = time.monotonic() - ticked, stack.query(stored)
    print(f"backfill  {backfilled} messages stored in {backfill_seconds:.1f} s: "
          f"{backfilled / backfill_seconds:.0f} messages/s")
    missing = f"SELECT count(*) FROM messagelogs_messagelog WHERE status IN {PROBLEMS} AND details_at IS NULL"
    details = wait(lambda: stack.query(missing) == 0, 1800, "details")
    problems = stack.query(f"SELECT count(*) FROM messagelogs_messagelog WHERE status IN {PROBLEMS}")
    headers = stack.query("SELECT count(*) FROM messagelogs_messagelog WHERE headers_at IS NOT NULL")
    print(f"details   {problems} problem messages complete {details:.1f} s after the backfill "
          f"({headers} messages have their custom headers)")
    ingest_seconds = backfill_seconds + details
    cpu = {name: tree_cpu(process.pid) for name, process in stack.processes.items()}
    stack.stop_profilers()
    ingest = backfilled / ingest_seconds
    print(f"ingest    {ingest:.0f} messages/s: {backfilled} messages stored with the details of the problem ones "
          f"in {ingest_seconds:.1f} s ({backfilled / (ingest_seconds + ticked - beat_started):.0f}/s counted "
          "from beat's start instead of its first tick)")
    # The anchor right away: on a shared machine, the nearer in time the two sides, the likelier the same load.
    same = SameWork(stack, args.concurrency)
    seconds = same.run()
    serving = same.entries / seconds
    print(f"serving   {serving:.0f} messages/s: the simulator's rate for the same work read raw "
          f"({len(same.windows)} windows, {same.entries} entries with $expand={EXPAND} and $select, "
          f"{same.calls} detail calls for {len(same.guids)} problem messages, {args.concurrency} threads) "
          f"in {seconds:.1f} s")
    print(f"ratio     ingest / serving = {ingest / serving:.2f}")
    entries, seconds = pages_only_rate(stack)
    print(f"pages     {entries / seconds:.0f} messages/s: the simulator's raw rate for the list pages only "
          f"({entries} messages, one connection, no $expand, no detail calls); ingest is {ingest / (entries / seconds):.2f} of it")
    before, follow_start = stack.query(stored), time.monotonic()
    time.sleep(args.follow)
    followed = stack.query(stored) - before
    print(f"follow    {followed / (time.monotonic() - follow_start):.1f} messages/s stored while following "
          f"(the simulator writes {args.rate / 60:.1f}/s; polls every 15 s, so this lags by up to one tick)")
    print(f"load      average {os.getloadavg()[0]:.1f} at the end (the machine has {os.cpu_count()} CPUs)")
    print(f"CPU seconds until the details were complete ({ingest_seconds:.0f} s from the first tick), "
          f"and over the whole run ({time.monotonic() - began:.0f} s, with following and both serving reads):")
    for name, process in sorted(stack.processes.items()):
        print(f"  {name:<18} {cpu[name]:7.1f} {tree_cpu(process.pid):7.1f}")
    print(f"  {'redis':<18} {'':7} {tree_cpu(stack.redis.process.pid):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000, help="simulator messages per minute")
    parser.add_argument("--follow", type=float, default=30.0, help="seconds of live following to measure")
    parser.add_argument("--concurrency", type=int, default=2, help="threads or processes per worker group")
    parser.add_argument("--pool", choices=("group", "threads", "prefork"), default="group",
                        help="Celery pool of every worker: 'group' runs each group's own, as supervisor does")
    parser.add_argument("--window", type=int, default=600, help="MESSAGELOG_BACKFILL_WINDOW_SECONDS")
    parser.add_argument("--profile", metavar="DIR", help="record each worker and the simulator with py-spy into DIR")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    # A TERM (a timeout, Ctrl-C from a wrapper) still stops every process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = Stack(args)
    try:
        run(stack, args)
    finally:
        stack.stop()
        print(f"logs and database left in {stack.var}")


if __name__ == "__main__":
    main()
