"""DATABASE_URL=postgres://...: migrations, the defaults and a controller tick on a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env
from tests.support.postgres import PostgresCluster, postgres  # noqa: F401  (a fixture)
from workers.queues import QUEUE_NAMES


def manage(postgres: PostgresCluster, *args: str) -> subprocess.CompletedProcess:
    env = subprocess_env(DATABASE_URL=postgres.url)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_migrations_create_the_default_thresholds_on_postgresql(postgres):
    assert manage(postgres, "migrate", "--noinput").returncode == 0
    done = manage(postgres, "shell", "-c",
                  "from django.db import connection; from apps.metrics.models import cMetricSettings; "
                  "print(connection.vendor, cMetricSettings.load().queue_warn, cMetricSettings.load().queue_critical)")
    assert done.stdout.strip().splitlines()[-1].split() == ["postgresql", "1000", "10000"], done.stderr


def test_a_controller_tick_records_history_and_events_in_postgresql(postgres, clean_redis):
    assert manage(postgres, "migrate", "--noinput").returncode == 0
    clean_redis.client(0).lpush("ai", *[b"{}"] * 3)
    tick = manage(postgres, "run_controller", "--once")
    assert tick.returncode == 0, tick.stderr[-3000:]
    done = manage(postgres, "shell", "-c",
                  "import json; from apps.metrics.models import QueueSample; "
                  "print(json.dumps(dict(QueueSample.objects.values_list('queue', 'depth'))))")
    depths = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(depths) == len(QUEUE_NAMES) and depths["ai"] == 3
