"""Reading a tenant over real HTTP with a real worker: backfill, follow-up, status changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.messagelogs.models import MessageLog
from apps.messagelogs.reading import STAGED_FIELDS
from apps.tenants.odata import LOG_PAGE_SIZE
from apps.tenants.models import BackfillWindow, Tenant
from tests.pipeline_support import fake_tenant, history, pipeline_worker, poll_now, tenant_row  # noqa: F401
from tests.test_metrics_support import wait_for


def stored() -> int:
    return MessageLog.objects.count()


@pytest.mark.django_db(transaction=True)
def test_first_start_backfills_the_history_then_follows_new_messages(clean_redis, fake_tenant, pipeline_worker):
    history(fake_tenant, 1200, days=1.5)
    tenant = tenant_row(fake_tenant, backfill_days=2)
    poll_now(tenant.id)
    wait_for(lambda: stored() == 1200, timeout=90, interval=0.5)
    assert BackfillWindow.objects.filter(tenant=tenant, done_at=None).count() == 0
    assert Tenant.objects.get(id=tenant.id).watermark is not None
    now = timezone.now()
    for i in range(30):
        fake_tenant.add(f"new-{i}", "COMPLETED", now - timedelta(seconds=1))
    poll_now(tenant.id)
    wait_for(lambda: stored() == 1230, timeout=60, interval=0.5)
    assert set(MessageLog.objects.filter(guid__startswith="new-").values_list("status", flat=True)) == {"COMPLETED"}
    assert fake_tenant.client_secret not in pipeline_worker.log.read_text()
    assert fake_tenant.selects == {",".join(STAGED_FIELDS)}  # hot and cold reads ask only for what is read
    assert fake_tenant.tops == {str(LOG_PAGE_SIZE)}  # and for pages of LOG_PAGE_SIZE


@pytest.mark.django_db(transaction=True)
def test_a_message_that_comes_back_with_a_new_status_is_updated_not_duplicated(clean_redis, fake_tenant,
                                                                                pipeline_worker):
    tenant = tenant_row(fake_tenant)
    Tenant.objects.filter(id=tenant.id).update(watermark=timezone.now() - timedelta(minutes=5))
    fake_tenant.add("m-1", "RETRY", timezone.now() - timedelta(seconds=30), error="HTTP 503 from receiver")
    poll_now(tenant.id)
    wait_for(lambda: MessageLog.objects.filter(guid="m-1", status="RETRY").exists(), timeout=60, interval=0.3)
    fake_tenant.change("m-1", "COMPLETED", timezone.now() - timedelta(seconds=1))
    poll_now(tenant.id)
    wait_for(lambda: MessageLog.objects.filter(guid="m-1", status="COMPLETED").exists(), timeout=60, interval=0.3)
    assert MessageLog.objects.filter(guid="m-1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_window_throttled_past_the_clients_own_retries_is_read_again_within_seconds(clean_redis, fake_tenant,
                                                                                      pipeline_worker):
    history(fake_tenant, 80, days=0.9)
    tenant = tenant_row(fake_tenant, backfill_days=1)  # 4 windows of 6 h, one page each
    # Each read may absorb the client's 5 retries; 30 refusals are more than 4 x 5,
    # so at least one window's read gives up and only the task's own retry saves it
    # (no beat runs here: the 30-minute resend of lost windows never comes).
    fake_tenant.busy["pages"] = 30
    poll_now(tenant.id)
    wait_for(lambda: stored() == 80, timeout=90, interval=0.5)
    assert fake_tenant.requests["busy pages"] == 30
    assert not BackfillWindow.objects.filter(tenant=tenant).exclude(last_error="").exists()
    assert not BackfillWindow.objects.filter(tenant=tenant, done_at=None).exists()
    assert "Retry in" in pipeline_worker.log.read_text()


@pytest.mark.django_db(transaction=True)
def test_details_refused_as_busy_past_the_clients_retries_are_fetched_within_seconds(clean_redis, fake_tenant,
                                                                                    pipeline_worker):
    tenant = tenant_row(fake_tenant)
    Tenant.objects.filter(id=tenant.id).update(watermark=timezone.now() - timedelta(minutes=5))
    for i in range(3):
        fake_tenant.add(f"f-{i}", "FAILED", timezone.now() - timedelta(seconds=30), error=f"mapping error {i}")
    fake_tenant.busy["details"] = 8  # more than one call's 1 + 5 tries: the chunk's task must ask again
    poll_now(tenant.id)
    failed = MessageLog.objects.filter(guid__startswith="f-")
    wait_for(lambda: failed.count() == 3 and not failed.filter(details_at=None).exists(), timeout=90, interval=0.5)
    assert sorted(failed.values_list("error_text", flat=True)) == [f"mapping error {i}" for i in range(3)]
    assert fake_tenant.requests["busy details"] == 8
