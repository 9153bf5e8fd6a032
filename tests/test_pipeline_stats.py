"""/api/stats/: counts per tenant, iFlow, hour and status from the stats cache; 503 without it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from apps.messagelogs.models import MessageLog
from apps.metrics.tasks import rebuild_caches
from apps.stats.cache import CACHE_KEY
from tests.pipeline_support import OFFLINE, pipeline_worker, tenant_row  # noqa: F401
from tests.test_metrics_support import private_server, wait_for


@pytest.fixture
def messages(db):
    tenant = tenant_row(OFFLINE)
    now = timezone.now()
    rows = [("OrderToCash", "COMPLETED")] * 3 + [("OrderToCash", "FAILED"), ("Invoices", "RETRY")]
    for i, (iflow, status) in enumerate(rows):
        MessageLog.objects.create(tenant=tenant, guid=f"m-{i}", iflow_name=iflow, status=status,
                                  log_start=now - timedelta(minutes=5), log_end=now - timedelta(minutes=5))
    return tenant


def get_stats(client, superadmin):
    client.force_login(superadmin)
    return client.get("/api/stats/")


@pytest.mark.django_db(transaction=True)
def test_stats_appear_and_come_back_after_a_cache_flush(client, clean_redis, superadmin, messages,
                                                        pipeline_worker):
    response = get_stats(client, superadmin)
    assert response.status_code == 503
    assert response.json()["error"] == "cache_miss"
    assert response.json()["detail"].startswith("No cached statistics found")
    wait_for(lambda: cache.get(CACHE_KEY), timeout=30)  # the one rebuild the 503 queued has run
    stats = client.get("/api/stats/").json()
    [tenant] = stats["tenants"]
    assert tenant["name"] == messages.name
    assert tenant["statuses"] == {"COMPLETED": 3, "FAILED": 1, "RETRY": 1}
    assert {(c["iflow"], c["status"], c["count"]) for c in tenant["counts"]} == {
        ("OrderToCash", "COMPLETED", 3), ("OrderToCash", "FAILED", 1), ("Invoices", "RETRY", 1)}
    clean_redis.client(2).flushdb()
    assert client.get("/api/stats/").json()["error"] == "cache_miss"
    wait_for(lambda: cache.get(CACHE_KEY), timeout=30)
    assert client.get("/api/stats/").json()["tenants"][0]["statuses"]["FAILED"] == 1


@pytest.mark.django_db
def test_the_controllers_rebuild_of_caches_refills_the_stats(client, clean_redis, superadmin, messages):
    results = rebuild_caches.run(["message_stats"])
    assert [(r["name"], r["ok"]) for r in results] == [("message_stats", True)]
    tenant = get_stats(client, superadmin).json()["tenants"][0]
    assert tenant["statuses"]["COMPLETED"] == 3
    hour = MessageLog.objects.first().log_end.replace(minute=0, second=0, microsecond=0)
    assert {c["hour"] for c in tenant["counts"]} == {hour.isoformat()}


@pytest.mark.django_db
def test_a_bearer_of_the_metrics_token_reads_the_stats(client, clean_redis, messages, settings):
    settings.METRICS_API_TOKEN = "stats-reader-token"
    rebuild_caches.run(["message_stats"])
    assert client.get("/api/stats/", HTTP_AUTHORIZATION="Bearer stats-reader-token").status_code == 200
    assert client.get("/api/stats/", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/api/stats/").status_code == 401


@pytest.mark.django_db
def test_with_the_cache_redis_stopped_it_answers_503_cache_unavailable(client, superadmin, messages, settings):
    with private_server() as cache_server:
        settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache",
                                       "LOCATION": cache_server.url(2),
                                       "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}}}
        rebuild_caches.run(["message_stats"])
        assert get_stats(client, superadmin).status_code == 200
        cache_server.stop()
        response = client.get("/api/stats/")
    assert response.status_code == 503
    assert response.json()["error"] == "cache_unavailable"
    assert response.json()["detail"].startswith("No cached statistics found")
