"""A worker killed in the middle of storing a page loses nothing: acks_late hands the page back."""

from __future__ import annotations

import os
import signal
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.db import connection

from apps.messagelogs.models import LogPage, MessageLog
from apps.messagelogs.tasks import messagelog_process_batch
from tests.pipeline_support import OFFLINE, pipeline_worker, tenant_row  # noqa: F401
from tests.support.fake_tenant import odata_date
from tests.support.missing import require
from tests.test_metrics_support import wait_for

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def pool_children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.django_db(transaction=True)
def test_a_page_whose_worker_was_killed_mid_batch_is_stored_once_on_redelivery(clean_redis, pipeline_worker):
    # It holds SQLite's write lock to catch the worker inside its transaction.
    require(connection.vendor == "sqlite", "an SQLite test database (the suite's default)")
    tenant = tenant_row(OFFLINE)
    entries = [{"MessageGuid": f"m-{i}", "IntegrationFlowName": "OrderToCash", "Status": "COMPLETED",
                "LogStart": odata_date(T0 + timedelta(seconds=i)), "LogEnd": odata_date(T0 + timedelta(seconds=i))}
               for i in range(300)]
    page = LogPage.objects.create(tenant=tenant, lane="hot", entries=entries)
    blocker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=30)
    blocker.execute("BEGIN IMMEDIATE")  # the worker's upsert now waits inside its task
    try:
        messagelog_process_batch.delay(page.id)
        wait_for(lambda: "messagelog_process_batch[" in pipeline_worker.log.read_text(), timeout=30)
        children = pool_children(pipeline_worker.process.pid)
        for child in children:
            os.kill(child, signal.SIGKILL)
        wait_for(lambda: "WorkerLostError" in pipeline_worker.log.read_text(), timeout=30)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(lambda: MessageLog.objects.count() == 300, timeout=60, interval=0.3)
    assert not LogPage.objects.filter(id=page.id).exists()
    assert MessageLog.objects.values("guid").distinct().count() == 300
