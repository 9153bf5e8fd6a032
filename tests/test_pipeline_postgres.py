"""The ingest path on PostgreSQL: a real worker backfills and follows a tenant over real HTTP."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from apps.tenants.tasks import periodic_run
from tests.conftest import ROOT, CeleryWorker, subprocess_env
from tests.pipeline_support import PIPELINE_ENV, fake_tenant, history  # noqa: F401
from tests.support.postgres import PostgresCluster, postgres  # noqa: F401  (a fixture)
from tests.test_metrics_support import wait_for
from workers.queues import QUEUE_NAMES

CREATE_TENANT = """
from apps.tenants.models import Tenant
t = Tenant(name="pg", api_url="{url}", auth="oauth", token_url="{token_url}", client_id="{client_id}",
           poll_interval=5, backfill_days=1)
t.set_secret("{secret}")
t.save()
print(t.id)
"""


def manage(postgres: PostgresCluster, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=subprocess_env(DATABASE_URL=postgres.url),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def connect(postgres: PostgresCluster) -> psycopg.Connection:
    return psycopg.connect(postgres.url.replace("postgres://", "postgresql://"))


def count(postgres: PostgresCluster, sql: str) -> int:
    with connect(postgres) as conn:
        return conn.execute(sql).fetchone()[0]


def poll(postgres: PostgresCluster) -> None:
    with connect(postgres) as conn:
        conn.execute("UPDATE tenants_tenant SET last_poll_at = NULL")
    periodic_run.delay()


def test_a_tenant_is_backfilled_followed_and_updated_on_postgresql(postgres, clean_redis, fake_tenant):
    manage(postgres, "migrate", "--noinput")
    history(fake_tenant, 598, days=0.9)
    for guid in ("chain-a", "chain-b"):
        fake_tenant.add(guid, "COMPLETED", timezone.now() - timedelta(hours=3), correlation_id="pg-chain")
    manage(postgres, "shell", "-c", CREATE_TENANT.format(url=fake_tenant.url, token_url=fake_tenant.token_url,
                                                         client_id=fake_tenant.client_id,
                                                         secret=fake_tenant.client_secret))
    worker = CeleryWorker(QUEUE_NAMES, name="pipeline-pg",
                          env=subprocess_env(DATABASE_URL=postgres.url, **PIPELINE_ENV)).start()
    try:
        poll(postgres)
        wait_for(lambda: count(postgres, "SELECT count(*) FROM messagelogs_messagelog") == 600,
                 timeout=90, interval=0.5)
        fake_tenant.add("pg-retry", "RETRY", timezone.now() - timedelta(seconds=2), error="timeout")
        poll(postgres)
        wait_for(lambda: count(postgres, "SELECT count(*) FROM messagelogs_messagelog WHERE details_at IS NOT NULL"),
                 timeout=60, interval=0.5)
        fake_tenant.change("pg-retry", "COMPLETED", timezone.now() - timedelta(seconds=1))
        poll(postgres)
        wait_for(lambda: count(postgres, "SELECT count(*) FROM messagelogs_messagelog "
                                         "WHERE guid = 'pg-retry' AND status = 'COMPLETED'"), timeout=60, interval=0.5)
        wait_for(lambda: count(postgres, "SELECT max(message_count) FROM messagelogs_correlation "
                                         "WHERE correlation_id = 'pg-chain'") == 2, timeout=30, interval=0.5)
    finally:
        worker.stop()
    assert count(postgres, "SELECT count(*) FROM messagelogs_messagelog") == 601
    assert count(postgres, "SELECT count(*) FROM messagelogs_logpage") == 0
    assert count(postgres, "SELECT count(*) FROM messagelogs_messagelog m JOIN messagelogs_correlation c "
                           "ON m.chain_id = c.id WHERE c.correlation_id = 'pg-chain'") == 2
