"""A real Prometheus scrapes the live ASGI server: the figures it stores are /api/metrics/'s.

Debian's prometheus (2.42) runs on a free loopback port with its own config
and data directory, scraping uvicorn every second with the Bearer token read
from a file (credentials_file); a second job scrapes with a wrong token. The
controller (run_controller --interval 1) and a real Celery worker consuming
``ai`` run beside them.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.conftest import ROOT, CeleryWorker
from tests.prometheus_support import PrometheusServer, prometheus_config
from tests.test_browser_support import Controller, WebServer, drop_queues
from tests.test_metrics_support import fill, wait_for
from workers.probe import probe
from workers.queues import QUEUE_NAMES

TOKEN = "prometheus-scrape-token-0123456789"
RULES = ROOT / "deploy/prometheus/flowwatch-rules.yml"
TASKS = 4
# increase() extrapolates the samples it has to the window's ends (by at most
# about one scrape interval in all): over a window the series spans, 40 s at 1 s
# scrapes, that moves 4 tasks by less than half a task.
WINDOW = 40


@pytest.fixture(scope="module")
def stack(django_db_setup, redis_server, tmp_path_factory):
    """uvicorn, the controller, a worker on ``ai`` only, and Prometheus scraping them."""
    broker = redis_server.client(0)
    drop_queues(broker, *QUEUE_NAMES)
    fill(broker, "archive_data", 7)  # nobody consumes it here: a depth that stays put
    home = tmp_path_factory.mktemp("prometheus")
    (home / "token").write_text(TOKEN + "\n")
    (home / "wrong-token").write_text("not-the-token\n")
    worker = CeleryWorker(("ai",), name="prometheus").start()
    server = WebServer(METRICS_API_TOKEN=TOKEN)
    controller = Controller(METRICS_API_TOKEN=TOKEN)
    target = server.url.removeprefix("http://")
    prometheus = PrometheusServer(home, prometheus_config(target, home / "token", home / "wrong-token", RULES))
    yield server, prometheus
    prometheus.stop()
    controller.stop()
    server.stop()
    worker.stop()
    drop_queues(broker, *QUEUE_NAMES)


def api_snapshot(server: WebServer) -> dict:
    request = urllib.request.Request(server.url + "/api/metrics/", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def api_queues(server: WebServer, field: str) -> dict[str, float]:
    return {q["name"]: float(q[field]) for q in api_snapshot(server)["queues"] if q[field] is not None}


def target_up(prometheus: PrometheusServer) -> dict | None:
    targets = prometheus.targets()
    return targets if targets.get("flowwatch", {}).get("health") == "up" else None


def test_the_target_is_up_with_the_token_from_the_credentials_file(stack):
    _server, prometheus = stack
    targets = wait_for(lambda: target_up(prometheus), timeout=60, interval=0.5)
    assert targets["flowwatch"]["lastError"] == ""


def test_a_scrape_with_a_wrong_token_is_refused(stack):
    _server, prometheus = stack
    wrong = wait_for(lambda: (t := prometheus.targets()["flowwatch-wrong-token"])["health"] == "down" and t,
                     timeout=60, interval=0.5)
    assert "401" in wrong["lastError"]
    assert prometheus.vector('up{job="flowwatch-wrong-token"}') == {"": 0.0}
    assert prometheus.vector('flowwatch_queue_depth{job="flowwatch-wrong-token"}') == {}


def test_prometheus_stores_the_queue_depths_the_api_answers(stack):
    server, prometheus = stack
    wait_for(lambda: target_up(prometheus), timeout=60, interval=0.5)

    def agreeing() -> tuple | None:
        stored = prometheus.vector('flowwatch_queue_depth{job="flowwatch"}')
        answered = api_queues(server, "depth")
        return (stored, answered) if stored == answered and len(stored) == len(QUEUE_NAMES) else None

    stored, answered = wait_for(agreeing, timeout=30, interval=0.5)
    assert stored["archive_data"] == answered["archive_data"] == 7.0


def test_the_increase_of_processed_tasks_is_the_count_of_tasks_that_ran(stack):
    server, prometheus = stack
    wait_for(lambda: target_up(prometheus), timeout=60, interval=0.5)
    ai = 'flowwatch_queue_processed_total{job="flowwatch",queue="ai"}'
    before = api_queues(server, "processed_total")["ai"]
    # The series must span the whole window, or extrapolation stretches the increase.
    wait_for(lambda: prometheus.vector(f"count_over_time({ai}[{WINDOW}s])").get("ai", 0) >= WINDOW - 2,
             timeout=WINDOW + 30, interval=1)
    wait_for(lambda: prometheus.vector(ai).get("ai") == before, timeout=30, interval=0.5)
    for result in [probe.apply_async(args=("ai", 0.0), queue="ai") for _ in range(TASKS)]:
        result.get(timeout=30)
    after = wait_for(lambda: (n := api_queues(server, "processed_total")["ai"]) >= before + TASKS and n,
                     timeout=30, interval=0.2)
    wait_for(lambda: prometheus.vector(ai).get("ai") == after, timeout=30, interval=0.5)
    time.sleep(2)  # a flat stretch at the window's end too
    increase = prometheus.vector(f"increase({ai}[{WINDOW}s])")["ai"]
    assert after - before == TASKS
    assert TASKS <= increase < TASKS + 0.5, increase


def test_the_shipped_rules_load_and_link_their_runbook_on_this_server(stack):
    server, prometheus = stack
    groups = prometheus.api("rules")["groups"]
    assert {g["file"] for g in groups} == {str(RULES)}
    assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups

    def no_consumer() -> dict | None:
        alerts = [a for a in prometheus.api("alerts")["alerts"]
                  if a["labels"]["alertname"] == "FlowwatchQueueNoConsumer"]
        return next((a for a in alerts if a["labels"]["queue"] == "archive_data"), None)

    alert = wait_for(no_consumer, timeout=30, interval=0.5)  # pending: the rule waits a minute to fire
    assert alert["annotations"]["runbook_url"] == f"{server.url}/docs/recovery/#a-queue-without-a-consumer"


def test_redis_own_eviction_and_rejection_counters_are_scraped_per_role(stack):
    server, prometheus = stack
    wait_for(lambda: target_up(prometheus), timeout=60, interval=0.5)

    def scraped() -> tuple | None:
        evicted = prometheus.vector('flowwatch_redis_evicted_keys_total{job="flowwatch"}')
        rejected = prometheus.vector('flowwatch_redis_rejected_connections_total{job="flowwatch"}')
        return (evicted, rejected) if len(evicted) == len(rejected) == 4 else None

    evicted, rejected = wait_for(scraped, timeout=30, interval=0.5)
    by_role = {entry["role"]: entry for entry in api_snapshot(server)["redis"]}
    assert evicted == {role: float(entry["evicted_keys"]) for role, entry in by_role.items()}
    assert rejected == {role: float(entry["rejected_connections"]) for role, entry in by_role.items()}
