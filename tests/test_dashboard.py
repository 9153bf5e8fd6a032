"""The superadmin metrics page and its occupancy endpoint, over HTTP."""

from __future__ import annotations

import re

import copy
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest
import redis.connection
from django.test import override_settings

from tests.conftest import PASSWORD
from tests.servers import free_port
from tests.test_dashboard_snapshots import make_snapshot, publish
from workers.queues import QUEUE_NAMES

METRICS = "/superadmin/metrics/"
OCCUPANCY = "/api/superadmin/occupancy/"


def dead_cache(port: int | None = None) -> dict:
    """CACHES pointing at a port nobody listens on: the cache Redis is down."""
    from django.conf import settings

    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port or free_port()}/2"
    return caches


@dataclass(frozen=True)
class ConnectAttempt:
    port: int
    connect_timeout: float | None  # seconds; None would wait forever
    read_timeout: float | None


class ConnectAttempts(list):
    def ports(self) -> set[int]:
        return {attempt.port for attempt in self}

    def worst_case_seconds(self) -> float:
        """The longest these attempts could have waited to connect, had the host
        swallowed every packet: the sum of their connect timeouts."""
        return sum(float("inf") if a.connect_timeout is None else a.connect_timeout for a in self)

    def longest_read_timeout(self) -> float:
        return max((float("inf") if a.read_timeout is None else a.read_timeout for a in self), default=0.0)


@contextmanager
def redis_connects() -> Iterator[ConnectAttempts]:
    """Every TCP connect redis-py attempts while the block runs, with its timeouts.

    A bound instead of a stopwatch (shared machines make elapsed-time
    assertions flaky): a request whose attempts are all listed here cannot
    wait on a dead Redis longer than ``worst_case_seconds()``.
    """
    attempts = ConnectAttempts()
    original = redis.connection.Connection._connect

    def recording(connection):
        attempts.append(ConnectAttempt(connection.port, connection.socket_connect_timeout,
                                       connection.socket_timeout))
        return original(connection)

    redis.connection.Connection._connect = recording
    try:
        yield attempts
    finally:
        redis.connection.Connection._connect = original


def embedded_snapshot(response) -> dict | None:
    html = response.content.decode()
    start = html.index('<script id="metrics-snapshot" type="application/json">') + len(
        '<script id="metrics-snapshot" type="application/json">')
    return json.loads(html[start:html.index("</script>", start)])


def test_an_anonymous_visitor_is_sent_to_the_login_page(client, db):
    response = client.get(METRICS)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={METRICS}"


@pytest.mark.parametrize("user", ["staff", "outsider"])
def test_a_logged_in_non_superadmin_gets_403(client, user, request):
    client.force_login(request.getfixturevalue(user))
    assert client.get(METRICS).status_code == 403


def test_the_login_page_logs_a_superadmin_in_and_follows_next(client, superadmin):
    page = client.get(f"/accounts/login/?next={METRICS}")
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post("/accounts/login/", {"username": "superadmin", "password": PASSWORD, "next": METRICS})
    assert response.status_code == 302 and response["Location"] == METRICS


def test_logout_is_a_post_that_ends_the_session(client, superadmin):
    client.force_login(superadmin)
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get(METRICS).status_code == 302


def test_the_page_has_a_row_for_each_queue_of_the_table(client, superadmin, clean_redis):
    client.force_login(superadmin)
    html = client.get(METRICS).content.decode()
    for name in QUEUE_NAMES:
        assert f'data-queue="{name}"' in html
    assert html.count("<tr data-queue=") == len(QUEUE_NAMES)
    for role in ("broker", "results", "cache", "channels"):
        assert f'data-role="{role}"' in html


def test_the_page_marks_reserved_exactly_the_queues_no_task_runs_on(client, superadmin, clean_redis):
    from tests.test_docs_queues import routed_tasks  # the Celery app's own routes, read another way

    client.force_login(superadmin)
    html = client.get(METRICS).content.decode()
    marked = set(re.findall(r'<tr data-queue="([a-z_]+)" data-reserved="true">', html))
    assert marked == set(QUEUE_NAMES) - set(routed_tasks())
    assert "ai" in marked and "messagelog_read" not in marked
    assert html.count('class="reserved-mark"') == len(marked)


def test_the_page_embeds_the_latest_snapshot_for_its_first_paint(client, superadmin, clean_redis):
    publish(make_snapshot({"ai": 7}))
    client.force_login(superadmin)
    snapshot = embedded_snapshot(client.get(METRICS))
    assert next(q for q in snapshot["queues"] if q["name"] == "ai")["depth"] == 7


def test_without_a_snapshot_the_page_says_the_controller_may_not_run(client, superadmin, clean_redis):
    client.force_login(superadmin)
    response = client.get(METRICS)
    assert response.status_code == 200
    assert b"No snapshot yet" in response.content
    assert embedded_snapshot(response) is None


def test_the_page_still_renders_when_the_cache_redis_is_down_without_waiting_past_two_seconds(client, superadmin):
    client.force_login(superadmin)
    port = free_port()
    with override_settings(CACHES=dead_cache(port)), redis_connects() as attempts:
        response = client.get(METRICS)
    assert response.status_code == 200
    assert b"The cache Redis is unavailable" in response.content
    assert attempts.ports() == {port}
    assert attempts.worst_case_seconds() <= 2.0 and attempts.longest_read_timeout() <= 1.0


def test_the_bundled_redis_is_said_to_lose_queues_and_caches_on_restart(client, superadmin, clean_redis, settings):
    settings.REDIS_LAYOUT.redis_local = True
    try:
        client.force_login(superadmin)
        html = client.get(METRICS).content.decode()
    finally:
        settings.REDIS_LAYOUT.redis_local = False
    assert "not persistent" in html and "lost when it restarts" in html


# That no Redis password reaches the page: tests/test_dashboard_secrets.py, against
# a live server whose Redis requires one.


# --- occupancy endpoint ------------------------------------------------------

def test_the_occupancy_endpoint_is_for_superadmins_only(client, staff):
    assert client.get(OCCUPANCY).status_code == 403
    client.force_login(staff)
    response = client.get(OCCUPANCY)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


def test_the_occupancy_endpoint_reports_broker_queues(client, superadmin, clean_redis):
    clean_redis.client(0).lpush("ai", b"{}", b"{}")
    client.force_login(superadmin)
    report = client.get(OCCUPANCY + "?refresh=1").json()
    (server,) = report["servers"]
    broker_db = next(db for db in server["databases"] if "broker" in db["roles"])
    queues = next(c for c in broker_db["categories"] if c["name"] == "broker queues")
    assert queues["keys"] == 1 and queues["bytes"] > 0


# --- thresholds form -----------------------------------------------------------

def threshold_post(**changes) -> dict[str, str]:
    from apps.metrics.models import DEFAULTS

    data = {key: str(value) for key, value in DEFAULTS.items()}
    data.update({"alert_emails": "", "alert_webhook_url": "",
                 "overrides-TOTAL_FORMS": "1", "overrides-INITIAL_FORMS": "0",
                 "overrides-MIN_NUM_FORMS": "0", "overrides-MAX_NUM_FORMS": "1000",
                 "overrides-0-queue": "", "overrides-0-warn": "", "overrides-0-critical": ""})
    data.update({key.replace("__", "-"): str(value) for key, value in changes.items()})
    return data


def test_saving_thresholds_stores_them_and_says_when_they_apply(client, superadmin):
    from apps.metrics.models import cMetricSettings

    client.force_login(superadmin)
    response = client.post(METRICS, threshold_post(queue_warn=50, queue_critical=500), follow=True)
    assert response.redirect_chain[-1] == (METRICS + "#thresholds", 302)
    assert (cMetricSettings.load().queue_warn, cMetricSettings.load().queue_critical) == (50, 500)
    assert b"applies them at its next tick" in response.content


def test_an_untouched_override_row_does_not_block_saving(client, superadmin):
    from apps.metrics.models import QueueThreshold

    client.force_login(superadmin)
    response = client.post(METRICS, threshold_post(queue_warn=70))
    assert response.status_code == 302
    assert not QueueThreshold.objects.exists()


def test_a_per_queue_override_is_saved_from_the_formset(client, superadmin):
    from apps.metrics.models import QueueThreshold

    client.force_login(superadmin)
    response = client.post(METRICS, threshold_post(overrides__0__queue="ai", overrides__0__warn=10,
                                                   overrides__0__critical=100))
    assert response.status_code == 302
    assert QueueThreshold.objects.get(queue="ai").critical == 100


def test_an_invalid_threshold_is_refused_with_the_error_next_to_its_field(client, superadmin):
    from apps.metrics.models import cMetricSettings

    client.force_login(superadmin)
    response = client.post(METRICS, threshold_post(queue_warn=500, queue_critical=100))
    assert response.status_code == 400
    html = response.content.decode()
    row = html[html.index('<label for="id_queue_warn">'):]
    row = row[:row.index("</tr>")]
    assert "must be below the critical one" in row  # in the queue warn row itself
    assert cMetricSettings.load().queue_warn == 1000


def test_an_invalid_override_is_refused_in_its_row(client, superadmin):
    client.force_login(superadmin)
    response = client.post(METRICS, threshold_post(overrides__0__queue="ai", overrides__0__warn=100,
                                                   overrides__0__critical=10))
    assert response.status_code == 400
    html = response.content.decode()
    table = html[html.index('id="override-table"'):]
    assert "must be below the critical one" in table[:table.index("</table>")]


def test_the_poll_target_answers_503_json_when_the_cache_redis_is_down_without_waiting_past_two_seconds(
        client, superadmin):
    client.force_login(superadmin)
    port = free_port()
    with override_settings(CACHES=dead_cache(port)), redis_connects() as attempts:
        response = client.get("/api/metrics/")
    assert response.status_code == 503
    assert response.json()["error"] == "cache_unavailable"
    assert attempts.ports() == {port}
    assert attempts.worst_case_seconds() <= 2.0 and attempts.longest_read_timeout() <= 1.0
