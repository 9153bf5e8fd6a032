"""The message log families' tasks.  Queues are declared in workers/queues.py;
each task names its own with ``routed_task``.

* ``messagelog_read`` / ``_cold``: read a tenant's new logs / one backfill window;
* ``messagelog_process_batch`` / ``_cold``: store one staged page;
* ``messagelog_get_details_hot`` / ``_cold`` / ``_alert``: error text and attachments;
* ``messagelog_customheaders``: custom header properties;
* ``messagelog_correlations``: chains of messages sharing a CorrelationId.

Every task takes ids, is sent after the commit of what it names, and may run
twice (acks_late redelivers the task of a worker killed mid-way).
"""

from __future__ import annotations

import logging
import random
from typing import Callable
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from apps.core.dispatch import chunks, send_on_commit
from apps.messagelogs import reading
from apps.messagelogs.enrich import fetch_details as fetch_one, link_correlations, save_details, save_headers, \
    store_headers
from apps.messagelogs.ingest import BadPage, Upserted, process_page
from apps.messagelogs.models import COLD, MessageLog
from apps.tenants.connections import client_for
from apps.tenants.models import BackfillWindow, Tenant
from workers.collect_keys import BrokerKeys
from workers.locks import Lock
from workers.redis_clients import client as redis_client
from workers.routing import routed_task

logger = logging.getLogger("flowwatch.messagelogs")

ALERT = "alert"
DETAILS_CHUNK = 50
HEADERS_CHUNK = 1000  # messages whose expanded headers one task stores
CORRELATIONS_CHUNK = 1000  # one task per page: a 1000-id call costs 20 % less CPU than five of 200
READ_LOCK_TTL = 300.0  # extended after every page; a dead reader's lock lapses (or the controller removes it)
# A busy SQLite ("database is locked" past the busy timeout) or a dropped
# connection is worth another try; a tenant's own errors are recorded instead.
RETRIES = dict(autoretry_for=(OperationalError, InterfaceError, httpx.TransportError), retry_backoff=True,
               retry_backoff_max=120, retry_jitter=True, max_retries=8)


# A tenant that stays throttled (429), failing (5xx) or unreachable past the
# client's own retries is asked again by the task after a jittered wait that
# doubles from TENANT_WAIT_BASE up to TENANT_WAIT_CAP, up to RETRIES' max_retries
# times (6 to 8 minutes in all); after that the task records the error and the
# catch-up runs (resend_lost_windows, catch_up_details) take over.
TENANT_WAIT_BASE, TENANT_WAIT_CAP = 2.0, 300.0


def read_lock(name: str) -> Lock:
    keys = BrokerKeys.from_options(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    return Lock(redis_client("broker"), keys, name, READ_LOCK_TTL)


def _tenant_error(exc: Exception) -> bool:
    from apps.tenants.client import TenantError

    return isinstance(exc, TenantError)


def _transient(exc: Exception) -> bool:
    """A tenant error worth asking again soon: throttled, a server error, or no answer at all."""
    from apps.tenants.client import TenantAuthError, TenantResponseError

    if not _tenant_error(exc) or isinstance(exc, (TenantAuthError, TenantResponseError)):
        return False
    status = getattr(exc, "status", None)
    return status is None or status == 429 or status >= 500


def _ask_again_later(task, exc: Exception) -> None:
    """Send ``task`` again after a wait when ``exc`` is transient and retries remain (raises Retry)."""
    retries = task.request.retries
    if not _transient(exc) or retries >= task.max_retries:
        return
    ceiling = min(TENANT_WAIT_CAP, TENANT_WAIT_BASE * 2 ** retries)
    raise task.retry(exc=exc, countdown=random.uniform(ceiling / 2, ceiling))


def _gone(exc: Exception) -> bool:
    """The tenant no longer has the message (or never had its details): nothing to wait for."""
    return _tenant_error(exc) and getattr(exc, "status", None) == 404


def _give_up(message: MessageLog, field: str, exc: Exception) -> None:
    logger.info("message %s: the tenant has no %s for it (%s)", message.guid,
                "details" if field == "details_at" else "headers", exc)
    MessageLog.objects.filter(id=message.id).update(**{field: timezone.now()})


@routed_task("messagelog_read", name="apps.messagelogs.tasks.messagelog_read", **RETRIES)
def messagelog_read(tenant_id: int) -> dict:
    """One incremental read of a tenant; a second read of the same tenant meanwhile steps aside."""
    tenant = Tenant.objects.filter(id=tenant_id, enabled=True).first()
    if tenant is None:
        return {"skipped": "no enabled tenant with this id"}
    lock = read_lock(f"tenant:{tenant_id}:read")
    if not lock.acquire():
        return {"skipped": "another read of this tenant is running"}
    try:
        return reading.hot_read(tenant, client_for(tenant), messagelog_process_batch, messagelog_read_cold,
                                lock.extend)
    except Exception as exc:
        if not _tenant_error(exc):
            raise
        logger.warning("tenant %s: read failed: %s", tenant.name, exc)
        Tenant.objects.filter(id=tenant_id).update(last_error=str(exc)[:2000])
        return {"error": str(exc)}
    finally:
        lock.release()


@routed_task("messagelog_read_cold", name="apps.messagelogs.tasks.messagelog_read_cold", bind=True, **RETRIES)
def messagelog_read_cold(self, window_id: int) -> dict:
    """Read one backfill window: again after a wait while the tenant is throttled or
    down, and from periodic_run if it still never finished."""
    window = BackfillWindow.objects.select_related("tenant").filter(id=window_id, done_at=None).first()
    if window is None or not window.tenant.enabled:
        return {"skipped": "window done, gone, or its tenant disabled"}
    lock = read_lock(f"backfill:{window_id}")
    if not lock.acquire():
        return {"skipped": "this window is being read"}
    try:
        return reading.cold_read(window, client_for(window.tenant), messagelog_process_batch_cold, lock.extend)
    except Exception as exc:
        if not _tenant_error(exc):
            raise
        logger.warning("tenant %s: backfill window %s failed: %s", window.tenant.name, window_id, exc)
        BackfillWindow.objects.filter(id=window_id).update(last_error=str(exc)[:2000])
        _ask_again_later(self, exc)
        return {"error": str(exc)}
    finally:
        lock.release()


def _process(page_id: int) -> dict:
    try:
        result = process_page(page_id)
    except BadPage as exc:
        # Bad data stays bad: the page is kept with its error, not retried.
        logger.error("page %s not stored: %s", page_id, exc)
        return {"error": str(exc)}
    if result is None:
        return {"skipped": "page already stored"}
    queue_followups(result)
    return {"created": len(result.created), "changed": len(result.changed)}


@routed_task("messagelog_process_batch", name="apps.messagelogs.tasks.messagelog_process_batch", **RETRIES)
def messagelog_process_batch(page_id: int) -> dict:
    return _process(page_id)


@routed_task("messagelog_process_batch_cold", name="apps.messagelogs.tasks.messagelog_process_batch_cold",
             **RETRIES)
def messagelog_process_batch_cold(page_id: int) -> dict:
    return _process(page_id)


def queue_followups(result: Upserted) -> None:
    """Details for problem messages (the alert lane for those a rule may want), headers, chains, stats."""
    from apps.alerts.matching import alert_candidates
    from apps.stats.cache import request_rebuild

    alerting = set(alert_candidates(result.tenant_id, result.problems))
    plain = [i for i in result.problems if i not in alerting]
    lane_task = messagelog_get_details_cold if result.lane == COLD else messagelog_get_details_hot
    for ids in chunks(sorted(alerting), DETAILS_CHUNK):
        send_on_commit(messagelog_get_details_alert, result.tenant_id, ids)
    for ids in chunks(plain, DETAILS_CHUNK):
        send_on_commit(lane_task, result.tenant_id, ids)
    # Headers the page carried are stored in bulk; the others' one call per problem message.
    for headers in chunks(result.headers, HEADERS_CHUNK):
        send_on_commit(messagelog_customheaders, result.tenant_id, [i for i, _ in headers], headers)
    for ids in chunks([i for i in result.headers_unknown if i not in alerting], DETAILS_CHUNK):
        send_on_commit(messagelog_customheaders, result.tenant_id, ids)
    for correlation_ids in chunks(sorted(result.correlation_ids), CORRELATIONS_CHUNK):
        send_on_commit(messagelog_correlations, result.tenant_id, correlation_ids)
    if result.created or result.changed:
        request_rebuild()


def fetch_details(tenant_id: int, message_ids: list[int], lane: str) -> list[int]:
    """Store details of the messages that lack them; returns the ids that have them now.

    The tenant calls come first, outside any transaction; what they found is
    stored in one transaction for the whole chunk.  A transient tenant error
    stops the chunk: what was found so far is stored, then the error is raised.
    """
    tenant = Tenant.objects.filter(id=tenant_id).first()
    if tenant is None:
        return []
    client = client_for(tenant)
    done, found = [], {}
    try:
        # Only what the calls need: loading every column of 50 messages cost a tenth of the tenant calls.
        for message in MessageLog.objects.filter(tenant_id=tenant_id, id__in=message_ids).only(
                "id", "tenant_id", "guid", "details_at", "headers_at"):
            def fetch(message=message) -> None:
                if message.details_at is None:
                    found[message.id] = fetch_one(message, client)
                if lane == ALERT and message.headers_at is None:
                    store_headers(message, client)  # a rule may match on them

            if _tenant_step(tenant, message, "details_at", "details", fetch):
                done.append(message.id)
    finally:
        save_details(found)
    return done


def _details_task(task, tenant_id: int, message_ids: list[int], lane: str) -> list[int]:
    """``fetch_details`` for a task: asked again later while the tenant is throttled or down."""
    try:
        return fetch_details(tenant_id, message_ids, lane)
    except Exception as exc:
        if not _tenant_error(exc):
            raise
        logger.warning("tenant %s: details of %d messages not fetched: %s", tenant_id, len(message_ids), exc)
        _ask_again_later(task, exc)
        return []  # catch_up_details sends them again


@routed_task("messagelog_get_details_hot", name="apps.messagelogs.tasks.messagelog_get_details_hot", bind=True,
             **RETRIES)
def messagelog_get_details_hot(self, tenant_id: int, message_ids: list[int]) -> dict:
    return {"fetched": len(_details_task(self, tenant_id, message_ids, "hot"))}


@routed_task("messagelog_get_details_cold", name="apps.messagelogs.tasks.messagelog_get_details_cold", bind=True,
             **RETRIES)
def messagelog_get_details_cold(self, tenant_id: int, message_ids: list[int]) -> dict:
    return {"fetched": len(_details_task(self, tenant_id, message_ids, "cold"))}


@routed_task("messagelog_get_details_alert", name="apps.messagelogs.tasks.messagelog_get_details_alert",
             bind=True, **RETRIES)
def messagelog_get_details_alert(self, tenant_id: int, message_ids: list[int]) -> dict:
    """Details first, then the rules: the alert then carries the error text."""
    from apps.alerts.tasks import evaluate_alerts

    done = _details_task(self, tenant_id, message_ids, ALERT)
    if done:
        send_on_commit(evaluate_alerts, tenant_id)
    return {"fetched": len(done)}


@routed_task("messagelog_customheaders", name="apps.messagelogs.tasks.messagelog_customheaders", bind=True,
             **RETRIES)
def messagelog_customheaders(self, tenant_id: int, message_ids: list[int], headers: list[list] | None = None) -> dict:
    """Store the custom headers of messages: ``headers`` as a page carried them, else one tenant call each."""
    if headers is not None:
        return {"stored": save_headers(headers)}
    tenant = Tenant.objects.filter(id=tenant_id).first()
    if tenant is None:
        return {"stored": 0}
    client = client_for(tenant)
    stored = 0
    try:
        for message in MessageLog.objects.filter(tenant_id=tenant_id, id__in=message_ids, headers_at=None):
            stored += _tenant_step(tenant, message, "headers_at", "headers",
                                   lambda message=message: store_headers(message, client))
    except Exception as exc:
        if not _tenant_error(exc):
            raise
        logger.warning("tenant %s: headers not fetched: %s", tenant.name, exc)
        _ask_again_later(self, exc)
    return {"stored": stored}


def _tenant_step(tenant: Tenant, message: MessageLog, stamp: str, what: str, step: Callable[[], None]) -> bool:
    """Run one tenant call for ``message``; False when it did not happen.

    A message the tenant no longer knows is given up (``stamp`` set, so it is
    not asked for again); any other refusal is logged and left for the
    catch-up.  Transient tenant errors (the caller asks again later) and
    errors that are not the tenant's (database, bugs) propagate.
    """
    try:
        step()
    except Exception as exc:
        if not _tenant_error(exc) or _transient(exc):
            raise
        if _gone(exc):
            _give_up(message, stamp, exc)
        else:
            logger.warning("tenant %s: %s of %s not fetched: %s", tenant.name, what, message.guid, exc)
        return False
    return True


@routed_task("messagelog_correlations", name="apps.messagelogs.tasks.messagelog_correlations", **RETRIES)
def messagelog_correlations(tenant_id: int, correlation_ids: list[str]) -> dict:
    return {"linked": link_correlations(tenant_id, correlation_ids)}


def missing_details(now, limit: int = 500) -> dict[int, list[int]]:
    """Problem messages of the last day still without details half an hour after they changed."""
    from apps.messagelogs.models import PROBLEM_STATUSES

    rows = (MessageLog.objects.filter(status__in=PROBLEM_STATUSES, details_at=None,
                                      updated_at__lt=now - timedelta(minutes=30),
                                      updated_at__gte=now - timedelta(days=1))
            .values_list("tenant_id", "id")[:limit])
    by_tenant: dict[int, list[int]] = {}
    for tenant_id, message_id in rows:
        by_tenant.setdefault(tenant_id, []).append(message_id)
    return by_tenant


@routed_task("periodic_run", name="apps.messagelogs.tasks.catch_up_details", **RETRIES)
def catch_up_details() -> dict:
    """From beat: queue details whose task was lost (a broker restart) or failed at the tenant.

    It looks back one day at most, so a message whose details the tenant
    never gives is given up on; the window starts half an hour back, so
    details merely waiting in a busy queue are not sent twice every run.
    """
    by_tenant = missing_details(timezone.now())
    for tenant_id, ids in by_tenant.items():
        for chunk in chunks(ids, DETAILS_CHUNK):
            messagelog_get_details_cold.delay(tenant_id, chunk)
    return {"resent": sum(map(len, by_tenant.values()))}
