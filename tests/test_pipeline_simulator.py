"""The pipeline against the bundled simulator process: real HTTP, a real worker, a real Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.messagelogs.models import CustomHeader, LogPage, MessageLog
from apps.tenants.client import TenantClient
from apps.tenants.models import BackfillWindow, Tenant
from tests.pipeline_support import pipeline_worker, poll_now  # noqa: F401  (a fixture)
from tests.test_metrics_support import wait_for


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

    # A read stops MESSAGELOG_READ_LAG_SECONDS before now: poll again only once
    # that edge has passed the onboarding watermark by a few seconds of new
    # messages (a fast backfill is over before it has).
    lag = timedelta(seconds=settings.MESSAGELOG_READ_LAG_SECONDS)
    wait_for(lambda: timezone.now() - lag > onboarded + timedelta(seconds=3), timeout=30, interval=0.2)
    poll_now(tenant.id)
    wait_for(lambda: MessageLog.objects.filter(tenant=tenant, log_end__gt=onboarded).exists(), timeout=60,
             interval=0.5)
    failed = MessageLog.objects.filter(status="FAILED")
    assert failed.exists()
    wait_for(lambda: not failed.filter(details_at=None).exists(), timeout=90, interval=0.5)
    assert all(failed.values_list("error_text", flat=True))
    # The headers came with the pages ($expand): every message has them, as the tenant lists them one by one.
    wait_for(lambda: not MessageLog.objects.filter(tenant=tenant, headers_at=None).exists(), timeout=90, interval=0.5)
    recent = MessageLog.objects.filter(tenant=tenant, log_start__gte=onboarded - timedelta(minutes=20))  # not aged out
    with TenantClient(simulator.config()) as client:
        for message in recent.order_by("id")[::97]:
            expected = sorted((h["Name"], h["Value"]) for h in client.custom_headers(message.guid))
            assert sorted(message.custom_headers.values_list("name", "value")) == expected
    assert CustomHeader.objects.filter(message__tenant=tenant).exists()
    assert simulator.client_secret not in pipeline_worker.log.read_text()


def assert_each_page_read_once(history: set[str]) -> None:
    """The windows counted each message of the history once: a page read twice
    adds up to a page (1000 entries), a lost one takes as many away.  A few
    messages may count twice: a RETRY that completed between two windows' reads
    moves to a later LogEnd."""
    read = sum(BackfillWindow.objects.values_list("entries", flat=True))
    assert len(history) - 50 <= read <= len(history) + 50, (read, len(history))


def backfill_everything(simulator, tenant: Tenant, timeout: float = 120) -> tuple[set[str], int]:
    """Onboard ``tenant``, wait until every backfill window is done: the history it
    covered, and how many requests the simulator had answered 429 meanwhile."""
    poll_now(tenant.id)
    onboarded = wait_for(lambda: Tenant.objects.get(id=tenant.id).watermark, timeout=30)
    wait_for(lambda: not BackfillWindow.objects.filter(tenant=tenant, done_at=None).exists(), timeout=timeout)
    throttled = simulator.stats()["throttled"]
    simulator.set_rate_limit(0)  # the test's own read of the history must not be throttled
    history = tenant_guids(simulator, onboarded)
    wait_for(lambda: history <= stored_guids() and not LogPage.objects.exists(), timeout=timeout, interval=0.5)
    return history, throttled


@pytest.mark.django_db(transaction=True)
def test_tokens_that_expire_mid_backfill_are_renewed_with_no_page_lost(clean_redis, simulator, pipeline_worker):
    # Tokens live 1 s: every read of the backfill outlives several of them.  The
    # client renews them itself (tests/test_tenant_client.py proves that alone);
    # here the whole pipeline must lose no page whichever renewal path works.
    simulator.restart(history_days=0.02, messages_per_minute=120, token_ttl=1)
    history, _ = backfill_everything(simulator, simulator_tenant(simulator))
    assert len(history) > 1000 and history <= stored_guids()  # nothing of the history is missing
    assert_each_page_read_once(history)
    assert simulator.stats()["tokens_issued"] > 2
    assert not BackfillWindow.objects.exclude(last_error="").exists()


@pytest.mark.django_db(transaction=True)
def test_a_429_storm_slows_the_backfill_without_losing_or_repeating_a_page(clean_redis, simulator, pipeline_worker):
    simulator.restart(history_days=0.02, messages_per_minute=120)
    simulator.set_rate_limit(3)  # a few requests a second: most of the backfill's calls are answered 429
    history, throttled = backfill_everything(simulator, simulator_tenant(simulator), timeout=180)
    assert throttled > 0
    assert history <= stored_guids()
    assert_each_page_read_once(history)
