"""Shared fixtures: users by role, the suite Redis, a real Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.redis_plugin import suite_server, suite_var_dir
from tests.servers import RedisServer, die_with_parent, stop_group
from tests.support.simulator import simulator, simulator_process  # noqa: F401  (fixtures for every module)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def closed_cache_breaker():
    """Each test starts with the cache's circuit breaker closed: an outage one
    test staged must not make the next test's cache reads fail at once."""
    from apps.core.cache_client import breaker

    breaker.succeeded()
    yield
    breaker.succeeded()


@pytest.fixture(autouse=True)
def fresh_snapshot_memo():
    """/api/metrics/ keeps the snapshot's bytes for half a second in the
    process; each test reads the cache it staged, not the last test's bytes."""
    from apps.metrics.views import snapshot_memo

    snapshot_memo.clear()
    yield
    snapshot_memo.clear()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """A file test database, so worker and server subprocesses share it."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(suite_var_dir() / "test.sqlite3")


@pytest.fixture
def superadmin(django_user_model):
    return django_user_model.objects.create_superuser("superadmin", "root@example.com", PASSWORD)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("staff", "staff@example.com", PASSWORD, is_staff=True)


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("outsider", "outsider@example.com", PASSWORD)


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    """The suite's Redis: all four roles live on it (databases 0-3)."""
    return suite_server()


@pytest.fixture
def clean_redis(redis_server):
    """Empty every role's database before the test."""
    for db in range(4):
        redis_server.client(db).flushdb()
    return redis_server


def test_db_url() -> str:
    return f"sqlite:///{suite_var_dir() / 'test.sqlite3'}"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The suite's environment for a child process (worker, server, command)."""
    env = dict(os.environ)
    env["DATABASE_URL"] = test_db_url()
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class CeleryWorker:
    """A real worker subprocess (Celery's command line through workers/cli.py) consuming the given queues."""

    def __init__(self, queues: tuple[str, ...], name: str = "pytest", env: dict[str, str] | None = None) -> None:
        self.queues = queues
        self.name = name
        self.env = env or subprocess_env()
        self.log = suite_var_dir() / f"worker-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "CeleryWorker":
        command = [
            sys.executable, "-m", "workers.cli", "-A", "config", "worker",  # as supervisord runs them
            "-Q", ",".join(self.queues), "-n", f"{self.name}@%h",
            "-c", "2", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log.read_text()[-3000:]}")
            if "ready." in self.log.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_group(self.process, timeout=30)


@pytest.fixture
def celery_worker(django_db_setup):
    """A real worker consuming every queue of the table, for this test only.

    Per test on purpose: a worker left running would drain the queues that
    depth and routing tests fill.
    """
    from workers.queues import QUEUE_NAMES

    worker = CeleryWorker(QUEUE_NAMES).start()
    yield worker
    worker.stop()
