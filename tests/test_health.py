"""/healthz and /readyz against the real suite Redis and a stopped one."""

from __future__ import annotations

import pytest

from tests.servers import RedisServer


@pytest.mark.django_db
def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_database_and_all_roles_answer(client, redis_server):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["failing"] == []


@pytest.mark.django_db
def test_readyz_names_the_failing_roles_fast_without_urls(client, monkeypatch):
    from workers import redis_clients

    dead = RedisServer().start()
    dead_port = dead.port
    dead.close()  # nothing listens there now
    monkeypatch.setenv("REDIS_CACHE_URL", f"redis://:hunter2@127.0.0.1:{dead_port}/2")
    monkeypatch.setenv("CHANNELS_REDIS_URL", f"redis://127.0.0.1:{dead_port}/3")
    redis_clients._layout.cache_clear()
    redis_clients.client.cache_clear()
    try:
        response = client.get("/readyz")
        timeouts = redis_clients.client("cache").connection_pool.connection_kwargs
    finally:
        redis_clients._layout.cache_clear()
        redis_clients.client.cache_clear()
    assert response.status_code == 503
    body = response.content.decode()
    assert response.json()["failing"] == ["cache", "channels"]
    assert "hunter2" not in body and str(dead_port) not in body
    # Fails fast by construction (no timing assertion on a shared machine).
    assert timeouts["socket_connect_timeout"] <= 1.0
    assert timeouts["socket_timeout"] <= 1.0
