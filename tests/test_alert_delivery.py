"""Alert webhooks: http(s) only, and an idempotency key a real receiver uses to drop a redelivery."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from apps.alerts.models import AlertRule
from apps.core import delivery
from apps.metrics import tasks
from apps.metrics.models import MetricEvent, cMetricSettings

pytestmark = pytest.mark.django_db


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that acts once per idempotency key; its first answer comes too late."""

    seen: list[tuple[str, dict]] = []
    acted: set[str] = set()
    slow_first = threading.Event()

    def do_POST(self) -> None:  # noqa: N802  http.server's spelling
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.seen.append((self.headers["Idempotency-Key"], body))
        Receiver.acted.add(self.headers["Idempotency-Key"])  # a repeat changes nothing
        if Receiver.slow_first.is_set():
            Receiver.slow_first.clear()
            time.sleep(1.5)  # past the sender's timeout: it cannot know this one arrived
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    Receiver.seen, Receiver.acted = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def events_for(url: str, count: int) -> list[MetricEvent]:
    config = cMetricSettings.load()
    config.alert_emails, config.alert_webhook_url = "", url
    config.save()
    return [MetricEvent.objects.create(kind="status", subject=f"queue:q{i}", old_status="ok", new_status="warn",
                                       message=f"queue q{i} warns") for i in range(count)]


def test_a_redelivered_alert_carries_the_same_key_in_header_and_body(receiver, monkeypatch):
    events = events_for(receiver, 2)
    ids = [event.id for event in events]
    monkeypatch.setattr(delivery, "WEBHOOK_TIMEOUT", 0.5)
    Receiver.slow_first.set()
    with pytest.raises(OSError):  # timed out: not stamped, so the retry sends it again
        tasks.trigger_alerts.run(ids)
    assert tasks.trigger_alerts.run(ids)["posted"] == 2
    (first_key, first), (second_key, second) = Receiver.seen
    assert first_key == second_key == first["idempotency_key"] == second["idempotency_key"]
    assert first_key == f"flowwatch-events-{ids[0]}-{ids[1]}"
    assert first["events"] == second["events"]
    assert len(Receiver.acted) == 1  # the receiver dropped the repeat by its key


def test_other_events_get_another_key(receiver):
    first, second = events_for(receiver, 2)
    tasks.trigger_alerts.run([first.id])
    tasks.trigger_alerts.run([second.id])
    assert [key for key, _body in Receiver.seen] == [f"flowwatch-events-{first.id}", f"flowwatch-events-{second.id}"]


def test_a_webhook_url_that_is_not_http_is_never_opened(tmp_path):
    target = tmp_path / "not-a-webhook"
    (event,) = events_for(f"file://{target}", 1)
    with pytest.raises(OSError, match="not http:// or https://"):
        tasks.trigger_alerts.run([event.id])
    assert not target.exists()
    event.refresh_from_db()
    assert event.webhook_at is None


@pytest.mark.parametrize("url", ["ftp://alerts.example.com/hook", "FTPS://alerts.example.com/hook"])
def test_an_alert_rule_refuses_a_webhook_that_is_not_http_for_every_writer_such_as_the_admin(url):
    rule = AlertRule(name="failed flows", webhook_url=url)
    with pytest.raises(ValidationError) as refused:
        rule.full_clean()
    assert list(refused.value.message_dict) == ["webhook_url"]
    AlertRule(name="failed flows", webhook_url="https://alerts.example.com/hook").full_clean()
