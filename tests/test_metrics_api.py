"""/api/metrics/, /api/metrics/history/ and /metrics: auth, answers, errors."""

from __future__ import annotations

import copy
import hmac
import time

import pytest

from apps.metrics.controller import Controller
from apps.metrics.models import MetricEvent, QueueSample
from tests.support.blackhole import black_hole
from tests.test_metrics_support import fill

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789"
ENDPOINTS = ["/api/metrics/", "/api/metrics/history/", "/metrics"]
PROMISED_SECONDS = 2.0


@pytest.fixture
def published(clean_redis):
    """One tick of the real controller published a snapshot into the suite's cache."""
    fill(clean_redis.client(0), "ai", 12)
    controller = Controller(send_tasks=False)
    assert controller.tick()
    controller.leader.release()
    return controller.last_snapshot


@pytest.mark.parametrize("url", ENDPOINTS)
def test_an_anonymous_request_gets_401(client, published, url):
    response = client.get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("url", ENDPOINTS)
def test_a_signed_in_non_superadmin_gets_403(client, published, staff, url):
    client.force_login(staff)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", ENDPOINTS)
def test_an_outsider_gets_403(client, published, outsider, url):
    client.force_login(outsider)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", ENDPOINTS)
def test_a_superadmin_session_is_let_in(client, published, superadmin, url):
    client.force_login(superadmin)
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("url", ENDPOINTS)
def test_the_bearer_token_works_when_metrics_api_token_is_set(client, published, settings, url):
    settings.METRICS_API_TOKEN = TOKEN
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.parametrize("url", ENDPOINTS)
def test_a_wrong_token_is_refused(client, published, settings, url):
    settings.METRICS_API_TOKEN = TOKEN
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_a_token_is_refused_while_metrics_api_token_is_empty(client, published, settings):
    settings.METRICS_API_TOKEN = ""
    assert client.get("/api/metrics/", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/api/metrics/", HTTP_AUTHORIZATION="Bearer anything").status_code == 401


def test_a_wrong_token_is_refused_even_with_a_superadmin_session(client, published, superadmin, settings):
    settings.METRICS_API_TOKEN = TOKEN
    client.force_login(superadmin)
    assert client.get("/api/metrics/", HTTP_AUTHORIZATION="Bearer nope").status_code == 401


def test_the_token_is_compared_in_constant_time(client, published, settings, monkeypatch):
    """The comparison goes through hmac.compare_digest (a spy: the real one still answers)."""
    settings.METRICS_API_TOKEN = TOKEN
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    client.get("/api/metrics/", HTTP_AUTHORIZATION="Bearer guess")
    assert calls == [(b"guess", TOKEN.encode())]


def test_the_api_answers_the_latest_snapshot(client, published, superadmin):
    client.force_login(superadmin)
    body = client.get("/api/metrics/").json()
    assert body == published
    ai = next(q for q in body["queues"] if q["name"] == "ai")
    assert {"name", "depth", "oldest_age_seconds", "consumers", "processed_per_minute", "status",
            "reasons", "warn", "critical", "lane", "group"} <= set(ai)
    assert ai["depth"] == 12
    broker = body["redis"][0]
    assert {"role", "reachable", "used_memory", "maxmemory", "memory_percent", "evicted_keys_delta",
            "rejected_connections_delta", "connected_clients", "maxmemory_policy", "status", "reasons"} <= set(broker)
    assert body["thresholds"]["queue_warn"] == 1000
    assert body["events"][0]["at"] >= body["events"][-1]["at"]  # latest first


@pytest.mark.parametrize("url", ["/api/metrics/", "/metrics"])
def test_without_a_cached_snapshot_it_answers_503_cache_unavailable_saying_why(client, clean_redis, superadmin, url):
    client.force_login(superadmin)
    response = client.get(url)
    assert response.status_code == 503
    assert response.json() == {"error": "cache_unavailable",
                               "detail": "No cached snapshot found: is manage.py run_controller running?"}


def test_with_the_cache_host_unreachable_the_api_answers_503_within_the_promised_two_seconds(
        client, superadmin, settings):
    client.force_login(superadmin)
    caches = copy.deepcopy(settings.CACHES)  # the project's own timeouts and retry, only the host moved
    with black_hole() as port:
        caches["default"]["LOCATION"] = f"redis://:hunter2@127.0.0.1:{port}/2"
        settings.CACHES = caches
        started = time.monotonic()
        response = client.get("/api/metrics/")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["error"] == "cache_unavailable"
    assert "hunter2" not in response.content.decode()
    assert elapsed < PROMISED_SECONDS  # docs/architecture.md: 503 within two seconds, never a hang


def test_prometheus_exposes_the_same_figures(client, published, superadmin):
    client.force_login(superadmin)
    response = client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'flowwatch_queue_depth{group="background",lane="ai",queue="ai"} 12.0' in text
    assert 'flowwatch_queue_status{group="background",lane="ai",queue="ai"} 2.0' in text  # no consumer
    assert 'flowwatch_redis_up{role="broker"} 1.0' in text
    assert 'flowwatch_queue_warn_threshold{group="background",lane="ai",queue="ai"} 1000.0' in text
    assert "flowwatch_redis_memory_percent" in text and "flowwatch_unacked_messages 0.0" in text
    # Its own registry: none of the global registry's process or Python metrics.
    assert "python_gc" not in text and "process_cpu" not in text


def test_history_answers_per_queue_and_per_role_series(client, published, superadmin):
    client.force_login(superadmin)
    body = client.get("/api/metrics/history/?minutes=60").json()
    assert body["minutes"] == 60
    [(epoch_ms, depth)] = body["queues"]["ai"]
    assert depth == 12 and epoch_ms % 60000 == 0
    assert set(body["redis"]) == {"broker", "results", "cache", "channels"}


def test_history_leaves_out_minutes_older_than_asked(client, published, superadmin):
    from django.utils import timezone

    QueueSample.objects.create(minute=timezone.now() - timezone.timedelta(hours=3), queue="ai", depth=99)
    client.force_login(superadmin)
    assert [d for _, d in client.get("/api/metrics/history/?minutes=60").json()["queues"]["ai"]] == [12]
    assert len(client.get("/api/metrics/history/?minutes=600").json()["queues"]["ai"]) == 2


@pytest.mark.parametrize("minutes", ["0", "10081", "abc", "-5"])
def test_history_refuses_a_bad_minutes_naming_the_parameter(client, superadmin, minutes):
    client.force_login(superadmin)
    response = client.get(f"/api/metrics/history/?minutes={minutes}")
    assert response.status_code == 400
    assert response.json()["parameter"] == "minutes"


def test_prune_history_drops_what_is_older_than_the_retention(published):
    from django.utils import timezone

    from apps.metrics.tasks import prune_history

    old = timezone.now() - timezone.timedelta(days=31)
    QueueSample.objects.create(minute=old, queue="ai", depth=1)
    MetricEvent.objects.create(at=old, kind="status", subject="queue:ai", message="old")
    counts = prune_history.run()
    assert counts["queue_samples"] == 1 and counts["events"] == 1
    assert QueueSample.objects.filter(queue="ai").count() == 1


def test_the_api_answers_the_cached_bytes_as_jsonresponse_would_spell_them(client, published, superadmin):
    from django.http import JsonResponse

    from apps.metrics.snapshot import latest_snapshot_json

    client.force_login(superadmin)
    response = client.get("/api/metrics/")
    assert response["Content-Type"] == "application/json"
    assert response.content == latest_snapshot_json()  # served as cached: no decode, no encode
    assert response.content == JsonResponse(published).content  # the JSON the endpoint always gave


def test_the_api_keeps_the_bytes_it_read_for_the_memo_and_then_reads_the_new_snapshot(
        client, published, superadmin, monkeypatch):
    from apps.metrics.snapshot import publish_to_cache
    from apps.metrics.views import snapshot_memo

    monkeypatch.setattr(snapshot_memo, "seconds", 0.3)
    client.force_login(superadmin)
    first = client.get("/api/metrics/").content
    publish_to_cache({**published, "duration_ms": 123456.0})
    assert client.get("/api/metrics/").content == first  # within the memo: the bytes it read
    time.sleep(0.35)
    assert client.get("/api/metrics/").json()["duration_ms"] == 123456.0


def test_a_missing_snapshot_is_not_kept_the_next_request_reads_the_cache_again(client, clean_redis, superadmin):
    from apps.metrics.snapshot import publish_to_cache

    client.force_login(superadmin)
    assert client.get("/api/metrics/").status_code == 503
    publish_to_cache({"collected_at": None, "queues": []})
    assert client.get("/api/metrics/").json() == {"collected_at": None, "queues": []}


def test_a_dead_cache_is_not_hidden_once_the_memo_runs_out(client, published, superadmin, settings, monkeypatch):
    from apps.metrics.views import snapshot_memo

    monkeypatch.setattr(snapshot_memo, "seconds", 0.3)
    client.force_login(superadmin)
    assert client.get("/api/metrics/").status_code == 200
    caches = copy.deepcopy(settings.CACHES)
    with black_hole() as port:
        caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port}/2"
        settings.CACHES = caches
        time.sleep(0.35)
        response = client.get("/api/metrics/")
    assert response.status_code == 503
    assert response.json()["error"] == "cache_unavailable"
