"""The pipeline against the bundled simulator process: real HTTP, a real worker, a real Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

simulator_support = pytest.importorskip("tests.support.simulator")  # it comes with the tenant client

from apps.messagelogs.models import MessageLog  # noqa: E402
from apps.tenants.client import TenantClient  # noqa: E402
from apps.tenants.models import BackfillWindow, Tenant  # noqa: E402
from tests.pipeline_support import pipeline_worker, poll_now  # noqa: E402, F401
from tests.test_metrics_support import wait_for  # noqa: E402

simulator, simulator_process = simulator_support.simulator, simulator_support.simulator_process


def simulator_tenant(simulator) -> Tenant:
    tenant = Tenant(name="simulator", api_url=simulator.url, auth="oauth", token_url=simulator.token_url,
                    client_id=simulator.client_id, poll_interval=5, backfill_days=1)
    tenant.set_secret(simulator.client_secret)
    tenant.save()
    return tenant


def tenant_guids(simulator, until) -> set[str]:
    """What the simulator shows with a LogEnd before ``until``, read with the client directly."""
    with TenantClient(simulator.config()) as client:
        return {e["MessageGuid"] for page in client.message_logs(timezone.now() - timedelta(days=2), until)
                for e in page.entries}


def stored_guids() -> set[str]:
    return set(MessageLog.objects.values_list("guid", flat=True))


@pytest.mark.django_db(transaction=True)
def test_first_start_backfills_the_simulators_history_then_follows_it(clean_redis, simulator, pipeline_worker):
    simulator.restart(history_days=0.02, messages_per_minute=120)
    tenant = simulator_tenant(simulator)
    poll_now(tenant.id)
    onboarded = wait_for(lambda: Tenant.objects.get(id=tenant.id).watermark, timeout=30)
    wait_for(lambda: not BackfillWindow.objects.filter(tenant=tenant, done_at=None).exists(), timeout=90)
    history = tenant_guids(simulator, onboarded)
    assert len(history) > 1000
    wait_for(lambda: history <= stored_guids(), timeout=90, interval=0.5)

    poll_now(tenant.id)
    wait_for(lambda: MessageLog.objects.filter(tenant=tenant, log_end__gt=onboarded).exists(), timeout=60,
             interval=0.5)
    failed = MessageLog.objects.filter(status="FAILED")
    assert failed.exists()
    wait_for(lambda: not failed.filter(details_at=None).exists(), timeout=90, interval=0.5)
    assert all(failed.values_list("error_text", flat=True))
    assert simulator.client_secret not in pipeline_worker.log.read_text()
