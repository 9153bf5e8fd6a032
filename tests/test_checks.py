"""Django system checks for the Redis layout, run as an operator runs them."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, subprocess_env
from tests.servers import RedisServer


def manage_check(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=60)


def test_a_clean_local_layout_passes(redis_server):
    done = manage_check()
    assert done.returncode == 0, done.stderr
    assert "flowwatch." not in done.stdout + done.stderr


def test_a_malformed_url_is_an_error_naming_the_variable():
    done = manage_check(REDIS_CACHE_URL="redis://localhost:notaport/2")
    assert done.returncode != 0
    assert "flowwatch.E001" in done.stderr
    assert "REDIS_CACHE_URL" in done.stderr


def test_an_unknown_scheme_and_a_database_out_of_range_are_errors():
    done = manage_check(CELERY_BROKER_URL="amqp://localhost/0", CHANNELS_REDIS_URL="redis://127.0.0.1:6379/42")
    assert done.returncode != 0
    assert "CELERY_BROKER_URL: unknown scheme 'amqp'" in done.stderr
    assert "CHANNELS_REDIS_URL: database 42 is out of range" in done.stderr


def test_a_broker_sharing_the_cache_database_is_warned_about(redis_server):
    done = manage_check(CELERY_BROKER_URL=redis_server.url(0), REDIS_CACHE_URL=redis_server.url(0))
    assert "flowwatch.W001" in done.stderr


def test_plain_redis_to_a_remote_host_is_warned_about():
    done = manage_check(REDIS_CACHE_URL="redis://cache.example.internal:6379/2")
    assert "flowwatch.W002" in done.stderr
    assert "cache.example.internal" in done.stderr


def test_passwords_never_appear_in_check_output():
    done = manage_check(REDIS_CACHE_URL="redis://:s3cr3t-pass@cache.example.internal:99999/2")
    assert done.returncode != 0
    assert "s3cr3t-pass" not in done.stdout + done.stderr
    assert "***" in done.stderr


def test_a_broker_that_evicts_keys_is_warned_about():
    with RedisServer("--maxmemory", "10mb", "--maxmemory-policy", "allkeys-lru") as evicting:
        done = manage_check(CELERY_BROKER_URL=evicting.url(0))
    assert "flowwatch.W004" in done.stderr
    assert "allkeys-lru" in done.stderr


def test_a_broker_with_noeviction_passes_the_eviction_check():
    with RedisServer("--maxmemory", "10mb", "--maxmemory-policy", "noeviction") as strict:
        done = manage_check(CELERY_BROKER_URL=strict.url(0))
    assert "flowwatch.W004" not in done.stderr


def test_every_process_logs_the_insecure_tls_warning_with_its_id_at_start():
    done = manage_check(REDIS_CACHE_URL="rediss://127.0.0.1:1/2?ssl_cert_reqs=none", REDIS_TLS_INSECURE="true")
    logged = [line for line in done.stderr.splitlines() if "redis layout: " in line]
    assert any("redis layout: flowwatch.W003: REDIS_TLS_INSECURE=true" in line for line in logged), done.stderr
