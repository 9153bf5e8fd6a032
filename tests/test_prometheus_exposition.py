"""/metrics as Prometheus reads it: counters beside the gauges, info metrics, promtool clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.metrics import counters, prometheus
from apps.metrics.controller import Controller
from apps.metrics.models import MetricEvent, cMetricSettings
from apps.metrics.tasks import prune_history, trigger_alerts
from tests.conftest import ROOT
from tests.test_metrics_support import fill
from workers.heartbeat import count_processed
from workers.collect_keys import BrokerKeys

pytestmark = pytest.mark.django_db
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
METRICS_DOC = ROOT / "docs/metrics.md"


@pytest.fixture
def scrape(client, superadmin):
    client.force_login(superadmin)

    def get() -> str:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        return response.content.decode()
    return get


def tick(redis_server) -> dict:
    controller = Controller(send_tasks=False)
    assert controller.tick()
    controller.leader.release()
    return controller.last_snapshot


def samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label pairs: value} of one sample name in an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def event(kind: str = "status", subject: str = "queue:ai", new_status: str = "warn", **extra) -> MetricEvent:
    return MetricEvent.objects.create(kind=kind, subject=subject, old_status="ok", new_status=new_status,
                                      message=f"{subject} is {new_status}", **extra)


def test_promtool_finds_nothing_to_complain_about_in_metrics(clean_redis, scrape):
    fill(clean_redis.client(0), "ai", 3)
    count_processed(clean_redis.client(0), BrokerKeys.from_options(), "ai")
    tick(clean_redis)
    event()
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape(), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def documented_families() -> tuple[set[str], set[str]]:
    """The names in docs/metrics.md's two tables under "Prometheus metrics": (gauges, counters and info)."""
    section = METRICS_DOC.read_text().split("### Prometheus metrics", 1)[1].split("\n## ", 1)[0]
    gauges, counted = section.split("\nCounters", 1)
    names = re.compile(r"^\|([^|]*)\|", re.M)

    def first_column(text: str) -> set[str]:
        return {n for cell in names.findall(text) for n in re.findall(r"`(flowwatch_[a-z0-9_]+)`", cell)}
    return first_column(gauges), first_column(counted)


def test_metrics_exports_the_documented_families_gauges_kept_beside_the_counters(clean_redis, scrape):
    """Today's gauges stay (deltas and per-minute included); every increase is also a `_total` counter."""
    tick(clean_redis)
    event()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", scrape(), re.M))
    gauges, counted = documented_families()
    assert {"flowwatch_queue_processed_per_minute", "flowwatch_redis_evicted_keys_delta",
            "flowwatch_redis_rejected_connections_delta"} <= gauges
    assert {name: types.get(name) for name in gauges} == dict.fromkeys(gauges, "gauge")
    assert {name: types.get(name) for name in counted} == {
        name: "gauge" if name.endswith("_info") else "counter" for name in counted}  # info is a gauge of 1 in 0.0.4
    assert all(name.endswith(("_total", "_info")) for name in counted), counted
    assert set(types) == gauges | counted, set(types) ^ (gauges | counted)


def test_processed_tasks_are_a_counter_beside_the_per_minute_gauge(clean_redis, scrape):
    broker = clean_redis.client(0)
    for _ in range(5):
        count_processed(broker, BrokerKeys.from_options(), "ai")
    snapshot = tick(clean_redis)
    text = scrape()
    labels = (("group", "background"), ("lane", "ai"), ("queue", "ai"))
    assert samples(text, "flowwatch_queue_processed_total")[labels] == 5.0
    assert [q["processed_total"] for q in snapshot["queues"] if q["name"] == "ai"] == [5]
    assert labels in samples(text, "flowwatch_queue_processed_per_minute")
    assert "# TYPE flowwatch_queue_processed_total counter" in text


def test_build_and_redis_info_name_the_version_policy_and_persistence(clean_redis, scrape):
    snapshot = tick(clean_redis)
    text = scrape()
    [build] = samples(text, "flowwatch_build_info")
    assert dict(build)["version"] and dict(build)["version"] != ""
    broker = next(r for r in snapshot["redis"] if r["role"] == "broker")
    info = {dict(k)["role"]: dict(k) for k in samples(text, "flowwatch_redis_info")}
    assert info["broker"] == {"role": "broker", "version": broker["redis_version"],
                              "maxmemory_policy": broker["maxmemory_policy"],
                              "persistent": str(broker["persistence"]["persistent"]).lower()}
    assert set(info) == {"broker", "results", "cache", "channels"}


def test_events_are_counted_by_kind_subject_type_and_new_status(clean_redis, scrape):
    tick(clean_redis)  # its own "no consumer" events are counted too
    before = samples(scrape(), "flowwatch_events_total")
    event()
    event(subject="queue:default")
    event(kind="unreachable", subject="redis:cache", new_status="critical")
    after = samples(scrape(), "flowwatch_events_total")
    warned, unreachable = ((("kind", "status"), ("new_status", "warn"), ("subject_type", "queue")),
                           (("kind", "unreachable"), ("new_status", "critical"), ("subject_type", "redis")))
    assert after[warned] - before[warned] == 2.0
    assert after[unreachable] - before.get(unreachable, 0.0) == 1.0


def test_pruning_old_events_does_not_lower_the_counters(clean_redis, scrape):
    tick(clean_redis)
    old = event()
    MetricEvent.objects.filter(id=old.id).update(at=timezone.now() - timedelta(days=400))
    event()
    before = samples(scrape(), "flowwatch_events_total")
    assert before[(("kind", "status"), ("new_status", "warn"), ("subject_type", "queue"))] >= 2.0
    assert prune_history.run()["events"] == 1
    assert not MetricEvent.objects.filter(id=old.id).exists()
    assert samples(scrape(), "flowwatch_events_total") == before


def test_a_restart_counts_for_every_role_of_the_restarted_server(clean_redis, scrape):
    tick(clean_redis)
    event(kind="restart", subject="redis:broker", new_status="critical",
          details={"server": "127.0.0.1:6390", "roles": ["broker", "results"]})
    event(kind="restart", subject="redis:cache", new_status="warn",
          details={"server": "127.0.0.1:6391", "roles": ["cache"]})
    restarts = samples(scrape(), "flowwatch_redis_restarts_total")
    assert restarts == {(("role", "broker"),): 1.0, (("role", "results"),): 1.0, (("role", "cache"),): 1.0,
                        (("role", "channels"),): 0.0}


def test_restart_and_alert_counters_start_at_zero_so_that_the_first_one_is_an_increase(clean_redis, scrape):
    tick(clean_redis)
    text = scrape()
    assert set(samples(text, "flowwatch_redis_restarts_total").values()) == {0.0}
    assert len(samples(text, "flowwatch_redis_restarts_total")) == 4
    assert samples(text, "flowwatch_alerts_sent_total") == {
        (("channel", channel), ("result", result)): 0.0 for channel in ("email", "webhook")
        for result in ("sent", "failed")}


def test_alerts_are_counted_per_channel_as_sent_or_failed(clean_redis, scrape, settings):
    tick(clean_redis)
    config = cMetricSettings.load()
    # A webhook nobody listens on: refused at once, so the delivery fails.
    config.alert_emails, config.alert_webhook_url = "ops@example.com", "http://127.0.0.1:9/hook"
    config.save()
    first, second = event(), event(subject="queue:default")
    with pytest.raises(urllib.error.URLError):
        trigger_alerts.run([first.id, second.id])
    assert len(mail.outbox) == 1
    sent = samples(scrape(), "flowwatch_alerts_sent_total")
    assert sent == {(("channel", "email"), ("result", "sent")): 2.0,
                    (("channel", "webhook"), ("result", "failed")): 2.0,
                    (("channel", "email"), ("result", "failed")): 0.0,
                    (("channel", "webhook"), ("result", "sent")): 0.0}


def test_redis_own_counters_are_exported_as_counters_when_the_snapshot_carries_them():
    snapshot = {"redis": [{"role": "broker", "reachable": True, "status": "ok", "evicted_keys": 7,
                           "rejected_connections": 2, "evicted_keys_delta": 0}]}
    text = prometheus.render(snapshot, now=0.0, counts={})[0].decode()
    assert samples(text, "flowwatch_redis_evicted_keys_total") == {(("role", "broker"),): 7.0}
    assert samples(text, "flowwatch_redis_rejected_connections_total") == {(("role", "broker"),): 2.0}
    assert samples(text, "flowwatch_redis_evicted_keys_delta") == {(("role", "broker"),): 0.0}


def test_without_a_database_the_snapshot_figures_still_serve(clean_redis, monkeypatch):
    from django.db import DatabaseError

    snapshot = tick(clean_redis)

    def refuse(names):
        raise DatabaseError("the database went away")
    monkeypatch.setattr(counters, "read", refuse)
    text = prometheus.render(snapshot, now=0.0, counts=prometheus.read_counts())[0].decode()
    assert "flowwatch_queue_depth" in text and "flowwatch_build_info" in text
    assert "flowwatch_events_total" not in text


def test_an_event_whose_counter_cannot_be_written_is_still_saved(clean_redis, monkeypatch, caplog):
    from django.db import DatabaseError

    def refuse(*args, **kwargs):
        raise DatabaseError("database is locked")
    monkeypatch.setattr(counters, "add", refuse)
    saved = event()
    assert MetricEvent.objects.filter(id=saved.id).exists()
    assert f"event {saved.id} was saved but not counted" in caplog.text
