"""Redis goes away and comes back: workers reconnect without help (docs/architecture.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, CeleryWorker, subprocess_env
from tests.servers import RedisServer
from workers.queues import QUEUE_NAMES


def probe(env: dict[str, str], timeout: int = 30) -> dict:
    done = subprocess.run(
        [sys.executable, "manage.py", "probe_queues", "--json", "--timeout", str(timeout)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 60,
    )
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {"ok": False, "error": done.stderr}


@pytest.mark.django_db(transaction=True)
def test_workers_consume_again_after_a_redis_restart_loses_everything():
    with RedisServer() as private:
        env = subprocess_env(REDIS_LOCAL_PORT=str(private.port))
        worker = CeleryWorker(QUEUE_NAMES, name="recovery", env=env).start()
        try:
            assert probe(env)["ok"] is True
            private.client(0).set("recovery-marker", "1")
            private.restart()  # non-persistent: queues, bindings and results are gone
            # The worker may already have re-declared its bindings, so the
            # database need not be empty; the marker written before is gone.
            assert private.client(0).exists("recovery-marker") == 0
            report = probe(env, timeout=60)
            assert report["ok"] is True, report
            assert {q["worker"].split("@")[0] for q in report["queues"]} == {"recovery"}
        finally:
            worker.stop()
