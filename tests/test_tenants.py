"""Tenants: secrets encrypted at rest and never shown back; the superadmin page; who polls when."""

from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.messagelogs.tasks import messagelog_read, read_lock
from apps.tenants import secrets
from apps.tenants.models import Tenant
from apps.tenants.tasks import due_tenants
from tests.conftest import PASSWORD
from tests.pipeline_support import OFFLINE, tenant_row

SECRET = "s3cret-pipeline-value"
FORM = {"name": "prod", "api_url": "https://tenant.example.com/api/v1", "auth": "oauth",
        "token_url": "https://tenant.example.com/oauth/token", "client_id": "sb-client", "secret": SECRET,
        "poll_interval": 60, "backfill_days": 7, "enabled": "on"}


@pytest.mark.django_db
def test_the_secret_is_stored_encrypted_and_decrypts_into_the_client_config():
    tenant = tenant_row(OFFLINE)
    stored = Tenant.objects.values_list("secret_encrypted", flat=True).get(id=tenant.id)
    assert SECRET not in stored and stored
    assert Tenant.objects.get(id=tenant.id).client_config().client_secret == SECRET


def test_the_key_file_is_created_once_and_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "tenant-secrets.key"
    key = secrets.ensure_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.ensure_key_file(path) == key


def test_the_installation_key_lives_in_var_dir():
    secrets.encrypt("x")
    assert (settings.VAR_DIR / "tenant-secrets.key").exists()


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_log_in_and_staff_are_refused(client, staff):
    assert client.get("/superadmin/tenants/").status_code == 302
    client.force_login(staff)
    assert client.get("/superadmin/tenants/").status_code == 403


@pytest.mark.django_db
def test_a_superadmin_adds_a_tenant_whose_secret_is_never_shown_back(client, superadmin):
    client.force_login(superadmin)
    response = client.post("/superadmin/tenants/add/", FORM)
    assert response.status_code == 302
    tenant = Tenant.objects.get(name="prod")
    for url in ("/superadmin/tenants/", f"/superadmin/tenants/{tenant.id}/",
                f"/admin/tenants/tenant/{tenant.id}/change/"):
        page = client.get(url).content.decode()
        assert SECRET not in page and tenant.secret_encrypted not in page


@pytest.mark.django_db
def test_saving_with_an_empty_secret_keeps_the_stored_one(client, superadmin):
    client.force_login(superadmin)
    client.post("/superadmin/tenants/add/", FORM)
    tenant = Tenant.objects.get(name="prod")
    response = client.post(f"/superadmin/tenants/{tenant.id}/", {**FORM, "secret": "", "poll_interval": 30})
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.poll_interval == 30 and tenant.client_config().client_secret == SECRET


@pytest.mark.django_db
def test_oauth_without_a_token_url_or_a_new_tenant_without_a_secret_is_refused(client, superadmin):
    client.force_login(superadmin)
    response = client.post("/superadmin/tenants/add/", {**FORM, "token_url": "", "secret": ""})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "token URL" in errors["token_url"][0] and "secret" in errors["secret"][0]
    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_a_tick_claims_each_due_tenant_once_and_skips_disabled_ones():
    fake = OFFLINE
    due = tenant_row(fake, name="due")
    tenant_row(fake, name="off", enabled=False)
    recent = tenant_row(fake, name="recent")
    now = timezone.now()
    Tenant.objects.filter(id=recent.id).update(last_poll_at=now - timedelta(seconds=2))
    assert due_tenants(now) == [due.id]
    assert due_tenants(now) == []
    assert due_tenants(now + timedelta(seconds=5)) == [due.id, recent.id]


@pytest.mark.django_db
def test_a_second_read_of_a_tenant_steps_aside_while_the_first_holds_its_lock(clean_redis):
    tenant = tenant_row(OFFLINE)
    lock = read_lock(f"tenant:{tenant.id}:read")
    assert lock.acquire()
    try:
        assert messagelog_read.run(tenant.id) == {"skipped": "another read of this tenant is running"}
    finally:
        lock.release()


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["tenants/tenant", "tenants/backfillwindow", "messagelogs/messagelog",
                                   "messagelogs/correlation", "alerts/alertrule", "alerts/alert",
                                   "alerts/dailyreport", "archives/archivefile"])
def test_the_pipeline_models_are_listed_in_the_admin(client, superadmin, model):
    client.force_login(superadmin)
    assert client.get(f"/admin/{model}/").status_code == 200


@pytest.mark.django_db
def test_lost_backfill_windows_and_missing_details_are_sent_again(clean_redis):
    from apps.messagelogs.models import MessageLog
    from apps.messagelogs.tasks import catch_up_details
    from apps.tenants.models import BackfillWindow
    from apps.tenants.tasks import resend_lost_windows

    tenant = tenant_row(OFFLINE)
    now = timezone.now()
    lost = BackfillWindow.objects.create(tenant=tenant, start=now - timedelta(hours=2), end=now - timedelta(hours=1),
                                         sent_at=now - timedelta(hours=1))
    BackfillWindow.objects.create(tenant=tenant, start=now - timedelta(hours=1), end=now, sent_at=now)
    assert resend_lost_windows(now) == [lost.id]
    for guid, age in (("recent", timedelta(hours=1)), ("too-old", timedelta(days=2)), ("just-now", timedelta())):
        message = MessageLog.objects.create(tenant=tenant, guid=guid, status="FAILED", log_start=now, log_end=now)
        MessageLog.objects.filter(id=message.id).update(updated_at=now - age)
    assert catch_up_details.run() == {"resent": 1}
    assert clean_redis.client(0).llen("messagelog_get_details_cold") == 1
