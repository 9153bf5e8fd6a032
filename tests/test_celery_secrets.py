"""Celery's introspection shows no Redis password (docs/configuration.md).

A real worker runs against a Redis that requires a password; `celery inspect
conf` and `inspect report` are run as an operator runs them, and their whole
output is searched for the password.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, CeleryWorker, subprocess_env
from tests.test_dashboard_secrets import SECRET, LockedRedis

pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture(scope="module")
def locked_worker(django_db_setup):
    server = LockedRedis().start()
    env = subprocess_env(CELERY_BROKER_URL=server.url(0), CELERY_RESULT_BACKEND=server.url(1),
                         REDIS_CACHE_URL=server.url(2), CHANNELS_REDIS_URL=server.url(3))
    worker = CeleryWorker(("trigger_alerts",), name="secrets", env=env).start()
    yield env
    worker.stop()
    server.close()


def inspect(env: dict[str, str], command: str) -> str:
    # Addressed to the one worker, the command returns as soon as it answered.
    destination = f"secrets@{socket.gethostname()}"
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "config", "inspect", command, "--timeout", "20",
                           "-d", destination], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("command", ["conf", "report"])
def test_inspect_shows_masked_urls_and_never_the_password(locked_worker, command):
    output = inspect(locked_worker, command)
    assert "secrets@" in output  # the worker answered: there is something to search
    assert "broker_url" in output and ":********@127.0.0.1" in output
    assert SECRET not in output


def test_inspect_conf_holds_only_celerys_own_settings(locked_worker):
    output = inspect(locked_worker, "conf")
    for django_setting in ("CACHES", "CHANNEL_LAYERS", "REDIS_LAYOUT", "DATABASES", "SECRET_KEY"):
        assert django_setting not in output
    assert "task_acks_late" in output and "broker_transport_options" in output
