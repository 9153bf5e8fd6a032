"""The README's run command as a first-time user meets it: the embedded demo.

`boot.py up` with SIMULATOR=true (what scripts/up sets unless told otherwise)
runs the bundled tenant simulator under supervisor, registers it as the
tenant `simulator`, and the pipeline reads it: messages are stored, failed
ones get their error text, the queues show processed work and /api/stats/
answers.  The stack then stops without leftovers, the simulator included.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request

import pytest

from tests.servers import free_port
from tests.test_metrics_support import wait_for
from tests.test_stack import assert_stops_cleanly, make_stack, worker_programs  # noqa: F401  (a fixture)

pytestmark = pytest.mark.stack

TOKEN = "demo-stack-metrics-token-0123456789"


def rows(stack, sql: str) -> list[tuple]:
    with sqlite3.connect(stack.var_dir / "flowwatch.sqlite3", timeout=10) as db:
        return db.execute(sql).fetchall()


def api(stack, path: str) -> dict | None:
    request = urllib.request.Request(f"http://127.0.0.1:{stack.web_port}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError:
        return None


def processed(stack, queue: str) -> int:
    snapshot = api(stack, "/api/metrics/") or {"queues": []}
    return next((q["processed_total"] or 0 for q in snapshot["queues"] if q["name"] == queue), 0)


def test_the_demo_stack_reads_the_bundled_simulator_from_first_start(make_stack):
    simulator_port = free_port()
    # Half an hour of history at 120 messages a minute: a backfill of a few
    # thousand messages, then live traffic, within a test's time.
    stack = make_stack(SIMULATOR="true", SIMULATOR_PORT=str(simulator_port), SIMULATOR_HISTORY_DAYS="0.02",
                       SIMULATOR_MESSAGES_PER_MINUTE="120", SIMULATOR_RATE_LIMIT="0", METRICS_API_TOKEN=TOKEN)
    stack.wait_healthy()
    assert f"http://127.0.0.1:{simulator_port}/api/v1" in stack.boot_output()
    stack.wait_running({"redis", "web", "beat", "controller", "simulator"} | worker_programs())

    tenants = rows(stack, "SELECT name, api_url, enabled FROM tenants_tenant")
    assert tenants == [("simulator", f"http://127.0.0.1:{simulator_port}/api/v1", 1)]
    stored = wait_for(lambda: rows(stack, "SELECT count(*) FROM messagelogs_messagelog")[0][0] > 500,
                      timeout=180, interval=2)
    assert stored
    wait_for(lambda: rows(stack, "SELECT count(*) FROM messagelogs_messagelog "
                                 "WHERE status = 'FAILED' AND error_text != ''")[0][0] > 0, timeout=120, interval=2)
    # The metrics page's per-queue figures show the real traffic.
    wait_for(lambda: processed(stack, "messagelog_process_batch_cold") > 0, timeout=60, interval=1)
    assert processed(stack, "messagelog_read_cold") > 0
    stats = wait_for(lambda: api(stack, "/api/stats/"), timeout=90, interval=2)
    assert stats and json.dumps(stats).count("simulator") >= 1, stats
    assert_stops_cleanly(stack, {"redis", "web", "beat", "controller", "simulator"} | worker_programs())
