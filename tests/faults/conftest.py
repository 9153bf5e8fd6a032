"""One real stack (`python boot.py up`, its own VAR_DIR and ports) for every fault test.

Each test breaks one thing on purpose, prints its figures (requests that
failed, tasks lost or repeated, seconds to recover) and puts back what it
broke, so the next test starts from a healthy stack.  The only bounds
asserted are the ones the product promises (handed back within two
controller intervals, a new leader within three, 2 s against a frozen
Redis), with margins for a loaded machine.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable

import pytest
import redis

from tests.test_stack import SUPERVISORCTL, Stack
from workers.queues import worker_groups

INTERVAL = 5.0  # METRICS_CONTROLLER_INTERVAL at its default: the promises are stated for it
DRILL_QUEUE = "periodic_run"
DRILL_GROUP = next(g for g, queues in worker_groups().items() if DRILL_QUEUE in queues)
GROUP_KEY = "fw-channels:group:superadmin_metrics"


def report(title: str, **figures: Any) -> None:
    """One line of figures in the test output (pytest -s or -rA shows it)."""
    print(f"\n[fault] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


class FaultStack(Stack):
    """The stack plus what the fault tests need: clients, pids, a session, tasks."""

    def broker(self, db: int = 0, **options: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port, db=db, socket_timeout=5, **options)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def get(self, path: str, timeout: float = 10.0, **headers: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def supervisorctl(self, *args: str) -> str:
        done = self.run(SUPERVISORCTL, "-c", "supervisord.conf", *args, timeout=60)
        return done.stdout + done.stderr

    def pid(self, program: str) -> int:
        return int(self.supervisorctl("pid", program).strip().splitlines()[-1])

    def session_key(self) -> str:
        done = self.manage("shell", "-c", (
            "from django.contrib.auth import get_user_model; from django.test import Client; "
            "c = Client(); c.force_login(get_user_model().objects.filter(is_superuser=True).first()); "
            "print(c.cookies['sessionid'].value)"))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def log_tail(self, program: str, chars: int = 3000) -> str:
        log = self.var_dir / "log" / f"{program}.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else f"(no {log.name})"

    def snapshot(self) -> dict | None:
        status, body = self.get("/api/metrics/", Authorization=f"Bearer {self.env['METRICS_API_TOKEN']}")
        return json.loads(body) if status == 200 else None

    def send(self, task: str, *args: Any, **options: Any) -> str:
        """Send a task to this stack's broker from the test process; its id."""
        from config.celery import app

        with app.connection_for_write(self.broker_url) as connection:
            return app.send_task(task, args=args, connection=connection, **options).id

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def drill_notes(self, token: str) -> list[str]:
        return [n.decode().split()[0] for n in self.broker().lrange(f"fw:drill:{token}", 0, -1)]


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "",
               explain: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = condition()
        except (redis.RedisError, OSError):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}\n{explain()}")
        time.sleep(interval)


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    token = uuid.uuid4().hex
    started = FaultStack(tmp_path_factory.mktemp("faults"), METRICS_API_TOKEN=token,
                         METRICS_CONTROLLER_INTERVAL=str(int(INTERVAL)))
    started.start()
    try:
        started.wait_healthy(timeout=120)
        wait_until(started.snapshot, timeout=60, what="a first snapshot")
        yield started
    finally:
        started.kill_everything()


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)

