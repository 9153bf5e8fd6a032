"""Queue thresholds with defaults and overrides, and their validation."""

from __future__ import annotations

import pytest

from apps.metrics.controller import Controller
from apps.metrics.forms import MetricSettingsForm, QueueThresholdFormSet
from apps.metrics.models import MetricEvent, QueueThreshold, cMetricSettings
from tests.test_metrics_support import fake_worker, fill, queue

pytestmark = pytest.mark.django_db


def tick(controller: Controller) -> dict:
    assert controller.tick()
    return controller.last_snapshot


@pytest.fixture
def controller(clean_redis):
    fake_worker(clean_redis.client(0))  # every queue has a consumer: depth alone decides
    controller = Controller(publish=False, send_tasks=False)
    yield controller
    controller.leader.release()
    controller.collector.close()


def test_the_data_migration_created_the_design_defaults():
    config = cMetricSettings.objects.get(pk=1)
    assert (config.queue_warn, config.queue_critical) == (1000, 10000)
    assert (config.memory_warn_percent, config.memory_critical_percent) == (90, 98)
    assert (config.evicted_keys_warn_min, config.evicted_keys_critical_min) == (1, 10)
    assert config.rejected_connections_critical_min == 1


def test_a_queue_below_1000_is_ok(controller, clean_redis):
    fill(clean_redis.client(0), "package_read", 999)
    entry = queue(tick(controller), "package_read")
    assert (entry["depth"], entry["status"], entry["reasons"]) == (999, "ok", [])


def test_it_marks_a_queue_warn_at_1000_by_default(controller, clean_redis):
    fill(clean_redis.client(0), "package_read", 1000)
    entry = queue(tick(controller), "package_read")
    assert entry["status"] == "warn"
    assert entry["reasons"] == ["depth 1000 >= warn 1000"]


def test_it_marks_a_queue_critical_at_10000_by_default(controller, clean_redis):
    fill(clean_redis.client(0), "package_read", 10000)
    entry = queue(tick(controller), "package_read")
    assert entry["status"] == "critical"
    assert entry["reasons"] == ["depth 10000 >= critical 10000"]
    event = MetricEvent.objects.get(subject="queue:package_read")
    assert (event.old_status, event.new_status) == ("ok", "critical")


def test_a_per_queue_override_replaces_the_defaults_for_that_queue_only(controller, clean_redis):
    QueueThreshold.objects.create(queue="ai", warn=10, critical=100)
    client = clean_redis.client(0)
    fill(client, "ai", 100)
    fill(client, "package_read", 100)
    snapshot = tick(controller)
    assert queue(snapshot, "ai")["status"] == "critical"
    assert (queue(snapshot, "ai")["warn"], queue(snapshot, "ai")["critical"]) == (10, 100)
    assert queue(snapshot, "package_read")["status"] == "ok"
    assert snapshot["thresholds"]["queue_overrides"] == {"ai": {"warn": 10, "critical": 100}}


def test_changed_global_thresholds_apply_at_the_next_tick(controller, clean_redis):
    fill(clean_redis.client(0), "package_read", 50)
    assert queue(tick(controller), "package_read")["status"] == "ok"
    cMetricSettings.objects.filter(pk=1).update(queue_warn=20, queue_critical=40)
    assert queue(tick(controller), "package_read")["status"] == "critical"


def test_an_empty_queue_without_consumer_warns_and_with_work_waiting_is_critical(clean_redis):
    fill(clean_redis.client(0), "ai", 1)
    controller = Controller(publish=False, send_tasks=False)
    snapshot = tick(controller)
    assert (queue(snapshot, "ai")["status"], queue(snapshot, "ai")["reasons"]) == ("critical", ["no consumer"])
    assert queue(snapshot, "package_read")["status"] == "warn"
    controller.leader.release()


def test_a_queue_with_a_consumer_that_processes_nothing_becomes_stalled(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client)
    fill(client, "ai", 3)
    controller = Controller(publish=False, send_tasks=False, stall_ticks=2)
    assert queue(tick(controller), "ai")["status"] == "ok"
    tick(controller)
    entry = queue(tick(controller), "ai")
    assert entry["status"] == "critical"
    assert entry["reasons"][0].startswith("stalled: 3 waiting, nothing processed for")
    controller.leader.release()


def test_a_stale_heartbeat_is_no_consumer(clean_redis):
    fake_worker(clean_redis.client(0), age=120)
    controller = Controller(publish=False, send_tasks=False)
    snapshot = tick(controller)
    assert queue(snapshot, "ai")["consumers"] == 0
    assert snapshot["workers"][0]["alive"] is False
    controller.leader.release()


# -- validation: every error names its field ---------------------------------------
def form_data(**changes) -> dict:
    data = {"queue_warn": 1000, "queue_critical": 10000, "memory_warn_percent": 90,
            "memory_critical_percent": 98, "evicted_keys_warn_min": 1, "evicted_keys_critical_min": 10,
            "rejected_connections_critical_min": 1, "history_retention_days": 30, "alert_emails": "",
            "alert_webhook_url": ""}
    data.update(changes)
    return data


def test_the_settings_form_accepts_the_defaults():
    form = MetricSettingsForm(form_data(alert_emails="ops@example.com, oncall@example.com"),
                              instance=cMetricSettings.load())
    assert form.is_valid(), form.errors
    form.save()
    assert cMetricSettings.load().emails == ["ops@example.com", "oncall@example.com"]


@pytest.mark.parametrize("changes, field", [
    ({"queue_warn": 10000, "queue_critical": 1000}, "queue_warn"),
    ({"memory_warn_percent": 99}, "memory_warn_percent"),
    ({"memory_critical_percent": 101}, "memory_critical_percent"),
    ({"memory_warn_percent": -1}, "memory_warn_percent"),
    ({"evicted_keys_warn_min": 10}, "evicted_keys_warn_min"),
    ({"rejected_connections_critical_min": -1}, "rejected_connections_critical_min"),
    ({"history_retention_days": 0}, "history_retention_days"),
    ({"alert_emails": "ops@example.com, not-an-address"}, "alert_emails"),
])
def test_an_invalid_threshold_is_refused_naming_its_field(changes, field):
    form = MetricSettingsForm(form_data(**changes), instance=cMetricSettings.load())
    assert not form.is_valid()
    assert list(form.errors) == [field]


def test_the_warn_error_says_what_it_must_be_below():
    form = MetricSettingsForm(form_data(queue_warn=5000, queue_critical=5000), instance=cMetricSettings.load())
    assert not form.is_valid()
    assert form.errors["queue_warn"] == ["The queue warn threshold (5000) must be below the critical one (5000)."]


def formset_data(*rows: tuple[str, int, int]) -> dict:
    data = {"form-TOTAL_FORMS": str(len(rows)), "form-INITIAL_FORMS": "0"}
    for i, (name, warn, critical) in enumerate(rows):
        data.update({f"form-{i}-queue": name, f"form-{i}-warn": str(warn), f"form-{i}-critical": str(critical)})
    return data


def test_a_queue_override_with_warn_not_below_critical_is_refused_naming_warn():
    formset = QueueThresholdFormSet(formset_data(("ai", 100, 10)), queryset=QueueThreshold.objects.none())
    assert not formset.is_valid()
    assert list(formset.errors[0]) == ["warn"]


def test_a_queue_override_for_an_undeclared_queue_is_refused_naming_queue():
    formset = QueueThresholdFormSet(formset_data(("nobody_consumes_this", 1, 2)),
                                    queryset=QueueThreshold.objects.none())
    assert not formset.is_valid()
    assert list(formset.errors[0]) == ["queue"]


def test_a_valid_queue_override_is_saved():
    formset = QueueThresholdFormSet(formset_data(("ai", 10, 100)), queryset=QueueThreshold.objects.none())
    assert formset.is_valid(), formset.errors
    formset.save()
    assert QueueThreshold.objects.get(queue="ai").critical == 100


# -- the admin: superadmins only ------------------------------------------------------
def test_a_superadmin_edits_the_thresholds_in_the_admin(client, superadmin):
    client.force_login(superadmin)
    response = client.get("/admin/metrics/cmetricsettings/")
    assert response.status_code == 302 and response["Location"].endswith("/metrics/cmetricsettings/1/change/")
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"queue_critical" in page.content
    data = form_data(queue_warn=500, queue_critical=400)
    data["_save"] = "Save"
    refused = client.post(response["Location"], data)
    assert refused.status_code == 200 and b"must be below the critical one" in refused.content
    assert cMetricSettings.load().queue_warn == 1000


def test_staff_who_are_not_superadmins_cannot_see_the_thresholds_in_the_admin(client, staff):
    client.force_login(staff)
    assert client.get("/admin/metrics/cmetricsettings/").status_code == 403
    assert client.get("/admin/metrics/cmetricsettings/1/change/").status_code == 403
    assert client.get("/admin/metrics/queuethreshold/").status_code == 403


def test_every_threshold_the_controller_applies_is_on_the_form_and_in_the_admin(client, superadmin):
    from apps.metrics.evaluate import Thresholds
    from apps.metrics.models import DEFAULTS, THRESHOLD_FIELDS

    applied = [name for name in Thresholds.__dataclass_fields__ if name != "queue_overrides"]
    assert list(THRESHOLD_FIELDS) == applied
    assert set(applied) <= set(MetricSettingsForm.base_fields) and set(applied) <= set(DEFAULTS)
    client.force_login(superadmin)
    page = client.get("/admin/metrics/cmetricsettings/1/change/").content.decode()
    assert all(f'name="{name}"' in page for name in applied)
    assert 'name="alert_webhook_url"' in page
