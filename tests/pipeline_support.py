"""Helpers shared by the pipeline tests (this module holds no test)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from django.utils import timezone

from tests.conftest import CeleryWorker, subprocess_env
from tests.support.fake_tenant import CLIENT_ID, CLIENT_SECRET, FakeTenant
from workers.queues import QUEUE_NAMES

# Workers read right up to now and cut history into small windows, so tests need not wait.
PIPELINE_ENV = {"MESSAGELOG_READ_LAG_SECONDS": "0", "MESSAGELOG_BACKFILL_WINDOW_SECONDS": "21600",
                "STATS_REBUILD_DELAY": "1"}


# A tenant row for tests that never call the tenant (port 9: discard, nothing listens).
OFFLINE = SimpleNamespace(url="http://127.0.0.1:9/api/v1", token_url="http://127.0.0.1:9/oauth/token",
                          client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.fixture
def fake_tenant():
    tenant = FakeTenant(page_size=100).start()
    yield tenant
    tenant.stop()


@pytest.fixture
def pipeline_worker(django_db_setup):
    worker = CeleryWorker(QUEUE_NAMES, name="pipeline", env=subprocess_env(**PIPELINE_ENV))
    worker.log.unlink(missing_ok=True)  # each test reads the log of its own worker only
    worker.start()
    yield worker
    worker.stop()


def tenant_row(fake: FakeTenant | SimpleNamespace, **fields):
    from apps.tenants.models import Tenant

    tenant = Tenant(name=fields.pop("name", "acme"), api_url=fake.url, auth="oauth", token_url=fake.token_url,
                    client_id=fake.client_id, poll_interval=5, backfill_days=fields.pop("backfill_days", 2), **fields)
    tenant.set_secret(fake.client_secret)
    tenant.save()
    return tenant


def history(fake: FakeTenant, count: int, days: float, prefix: str = "old") -> None:
    """``count`` COMPLETED messages spread over the last ``days`` days."""
    now = timezone.now()
    step = timedelta(days=days) / (count + 1)
    for i in range(count):
        fake.add(f"{prefix}-{i:05d}", "COMPLETED", now - timedelta(days=days) + step * (i + 1))


def poll_now(tenant_id: int) -> None:
    """Make the tenant due and send one beat tick."""
    from apps.tenants.models import Tenant
    from apps.tenants.tasks import periodic_run

    Tenant.objects.filter(id=tenant_id).update(last_poll_at=None)
    periodic_run.delay()


class WebhookRecorder:
    """A webhook receiver on a free port; ``received`` holds every JSON body posted."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        recorder = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  http.server's spelling
                recorder.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    recorder = WebhookRecorder()
    yield recorder
    recorder.stop()
