"""rediss:// on all four roles, against a real TLS Redis with a CA made here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, CeleryWorker, subprocess_env
from tests.servers import RedisServer
from tests.support.certs import certs, tls_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.tls

ROLE_VARS = {"CELERY_BROKER_URL": 0, "CELERY_RESULT_BACKEND": 1, "REDIS_CACHE_URL": 2, "CHANNELS_REDIS_URL": 3}




def tls_env(server: RedisServer, query: str = "", **extra: str) -> dict[str, str]:
    urls = {var: server.url(db) + query for var, db in ROLE_VARS.items()}
    return subprocess_env(**urls, **extra)


def roundtrip(env: dict[str, str], *roles: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.roles_roundtrip", *roles],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_role_works_over_verified_tls(tls_server, certs):
    env = tls_env(tls_server, REDIS_CA_CERTS=certs["ca"])
    worker = CeleryWorker(("ai",), name="tls", env=env).start()
    try:
        assert roundtrip(env, "cache", "channels", "broker", "results", "celery") == {
            "cache": "ok", "channels": "ok", "broker": "ok", "results": "ok", "celery": "ok"}
    finally:
        worker.stop()


def test_a_server_certificate_from_an_unknown_ca_is_refused_on_every_role(tls_server):
    # No REDIS_CA_CERTS: certifi's public bundle does not know the test CA.
    result = roundtrip(tls_env(tls_server), "cache", "channels", "broker", "results")
    assert set(result) == {"cache", "channels", "broker", "results"}
    for role, outcome in result.items():
        assert "certificate verify failed" in outcome, (role, outcome)


def test_turning_verification_off_is_refused_without_the_insecure_switch(tls_server):
    env = tls_env(tls_server, query="?ssl_cert_reqs=none")
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "flowwatch.E001" in done.stderr
    assert "REDIS_TLS_INSECURE" in done.stderr


def test_the_insecure_switch_connects_without_verification_and_warns(tls_server):
    env = tls_env(tls_server, query="?ssl_cert_reqs=none", REDIS_TLS_INSECURE="true")
    assert roundtrip(env, "cache", "channels") == {"cache": "ok", "channels": "ok"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "flowwatch.W003" in done.stderr + done.stdout


def test_url_options_that_weaken_verification_are_refused(tls_server):
    # ssl_cert_reqs=required is refused too: kombu would let it replace
    # broker_use_ssl and drop REDIS_CA_CERTS.
    for query in ("?ssl_check_hostname=false", "?ssl_cert_reqs=none&ssl_cert_reqs=required",
                  "?ssl_cert_reqs=required", "?ssl_ca_certs=/tmp/other.pem"):
        env = tls_env(tls_server, query=query, REDIS_TLS_INSECURE="true")
        done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, query
        assert "flowwatch.E001" in done.stderr, query
