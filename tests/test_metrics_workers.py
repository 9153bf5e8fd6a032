"""Heartbeats, consumers and processed counts from a real Celery worker; alert delivery."""

from __future__ import annotations

import base64
import json
import os
import signal
import smtplib
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend

from apps.metrics.controller import Controller
from apps.metrics.models import MetricEvent, cMetricSettings
from apps.metrics.tasks import rebuild_caches, trigger_alerts
from tests.conftest import CeleryWorker
from tests.test_metrics_support import KEYS, queue, wait_for
from workers.locks import Lock
from workers.probe import probe
from workers.queues import QUEUE_NAMES
from workers.rebuild import rebuilder, run_rebuilders, unregister


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_shows_as_consumer_and_its_tasks_as_processed(clean_redis, celery_worker):
    controller = Controller(publish=False, send_tasks=False)
    # "ready." in the worker's log can come before its first heartbeat lands: wait for the heartbeat.
    snapshot = wait_for(lambda: controller.tick() and controller.last_snapshot["workers"] and controller.last_snapshot)
    [worker] = snapshot["workers"]
    assert worker["name"].startswith("pytest@") and worker["alive"] is True
    assert sorted(worker["queues"]) == sorted(QUEUE_NAMES)
    assert all(q["consumers"] == 1 for q in snapshot["queues"])
    results = [probe.apply_async(args=("ai", 0.0), queue="ai") for _ in range(3)]
    for result in results:
        result.get(timeout=30)

    def counted() -> dict | None:
        controller.tick()
        entry = queue(controller.last_snapshot, "ai")
        return entry if entry["processed_total"] >= 3 else None

    ai = wait_for(counted, timeout=15, interval=0.1)
    assert ai["processed_total"] == 3
    assert ai["processed_per_minute"] > 0  # a sliding window over this and the previous minute
    assert queue(controller.last_snapshot, "stats_cache")["processed_total"] == 0
    celery_worker.stop()  # a warm shutdown removes the heartbeat at once
    controller.tick()
    assert controller.last_snapshot["workers"] == []
    assert queue(controller.last_snapshot, "ai")["consumers"] == 0
    controller.leader.release()


@pytest.mark.django_db
def test_trigger_alerts_is_routed_to_its_own_queue(clean_redis):
    trigger_alerts.apply_async(args=([1],))
    assert clean_redis.client(0).llen("trigger_alerts") == 1


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self) -> None:  # noqa: N802  http.server's spelling
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def critical_event_with_mail_and_webhook(url: str) -> MetricEvent:
    """Alerts go to one mailbox and the test webhook; one critical event to send."""
    config = cMetricSettings.load()
    config.alert_emails, config.alert_webhook_url = "ops@example.com", url
    config.save()
    return MetricEvent.objects.create(kind="status", subject="queue:ai", old_status="ok", new_status="critical",
                                      message="queue ai is critical (was ok): no consumer")



@pytest.mark.django_db
def test_an_event_is_mailed_and_posted_once_even_when_retried(webhook):
    url, received = webhook
    event = critical_event_with_mail_and_webhook(url)
    assert trigger_alerts.run([event.id]) == {"events": 1, "emailed": 1, "posted": 1}
    assert trigger_alerts.run([event.id]) == {"events": 1, "emailed": 0, "posted": 0}
    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.subject.startswith("[Flowwatch critical] queue ai is critical")
    assert received[0]["events"][0]["subject"] == "queue:ai"
    assert len(received) == 1


@pytest.mark.django_db
def test_the_controller_hands_new_events_to_trigger_alerts(clean_redis):
    controller = Controller(publish=False)
    controller.tick()  # no consumer anywhere: one event per queue
    controller.leader.release()
    [raw] = clean_redis.client(0).lrange("trigger_alerts", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "apps.metrics.tasks.trigger_alerts"
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert len(args[0]) == len(QUEUE_NAMES) == MetricEvent.objects.count()


def test_the_rebuild_registry_runs_every_rebuilder_and_survives_a_broken_one():
    ran = []
    rebuilder("test-good")(lambda: ran.append("good"))

    @rebuilder("test-broken")
    def broken() -> None:
        raise RuntimeError("boom")

    try:
        results = {r.name: r for r in run_rebuilders(["test-broken", "test-good"])}
    finally:
        unregister("test-good")
        unregister("test-broken")
    assert ran == ["good"]
    assert results["test-good"].ok and not results["test-broken"].ok
    assert results["test-broken"].error == "RuntimeError: boom"


def heartbeat_of(client, prefix: str) -> dict | None:
    for name, raw in client.hgetall("fw:workers").items():
        if name.decode().startswith(prefix):
            return json.loads(raw)
    return None


@pytest.mark.django_db(transaction=True)
def test_the_locks_of_a_crashed_worker_die_as_soon_as_it_beats_again_under_its_name(clean_redis):
    client = clean_redis.client(0)
    worker = CeleryWorker(("ai",), name="crashy").start()
    try:
        first = wait_for(lambda: heartbeat_of(client, "crashy@"))
        assert first["instance"]
        Lock(client, KEYS, "tenant:7", ttl=600, owner=f"{first['name']}#{first['instance']}").acquire()
        os.killpg(worker.process.pid, signal.SIGKILL)  # a crash: no heartbeat removal, no release
        worker.process.wait()
        worker = CeleryWorker(("ai",), name="crashy").start()  # supervisor starts it again, same name
        second = wait_for(lambda: (beat := heartbeat_of(client, "crashy@"))["instance"] != first["instance"]
                          and beat)
        assert second["name"] == first["name"]
        controller = Controller(publish=False, send_tasks=False)
        assert controller.tick()
        controller.leader.release()
    finally:
        worker.stop()
    assert not client.exists("fw:lock:tenant:7")  # not 10 minutes later, at its TTL


class FailingMailBackend(BaseEmailBackend):
    """An SMTP server that went away."""

    def send_messages(self, messages) -> int:
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


@pytest.mark.django_db
def test_a_failing_mail_server_does_not_keep_the_webhook_from_being_sent(webhook, settings):
    url, received = webhook
    event = critical_event_with_mail_and_webhook(url)
    settings.EMAIL_BACKEND = "tests.test_metrics_workers.FailingMailBackend"
    with pytest.raises(smtplib.SMTPException):  # raised after the webhook: autoretry retries the task
        trigger_alerts.run([event.id])
    event.refresh_from_db()
    assert len(received) == 1 and event.webhook_at is not None and event.emailed_at is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # the mail server is back
    assert trigger_alerts.run([event.id]) == {"events": 1, "emailed": 1, "posted": 0}
    assert len(received) == 1  # the retry sent only what was missing
    assert [m.to for m in mail.outbox] == [["ops@example.com"]]


def test_rebuild_caches_logs_what_it_ran(caplog):
    rebuilder("test-logged")(lambda: None)
    try:
        with caplog.at_level("INFO", logger="flowwatch.metrics"):
            results = rebuild_caches.run(["test-logged"])
            rebuild_caches.run(["test-not-registered"])
    finally:
        unregister("test-logged")
    assert [r["name"] for r in results] == ["test-logged"]
    assert "rebuild_caches: test-logged rebuilt in" in caplog.text
    assert "rebuild_caches: no cache rebuilder registered under test-not-registered" in caplog.text
