"""The thresholds form refuses what it cannot use: non-HTTP webhooks, and
a formset that claims more forms than there are queues."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.metrics.forms import MAX_OVERRIDES, MetricSettingsForm
from apps.metrics.models import cMetricSettings
from tests.test_dashboard import METRICS, threshold_post
from tests.test_metrics_thresholds import form_data
from workers.queues import QUEUE_NAMES

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["ftp://alerts.example.com/hook", "file:///etc/passwd",
                                 "gopher://alerts.example.com/"])
def test_a_webhook_that_is_not_http_is_refused_naming_the_field(url):
    form = MetricSettingsForm(form_data(alert_webhook_url=url), instance=cMetricSettings.load())
    assert not form.is_valid()
    assert list(form.errors) == ["alert_webhook_url"]


@pytest.mark.parametrize("url", ["http://hooks.internal:8080/flowwatch", "https://alerts.example.com/hook"])
def test_http_and_https_webhooks_are_accepted(url):
    form = MetricSettingsForm(form_data(alert_webhook_url=url), instance=cMetricSettings.load())
    assert form.is_valid(), form.errors


def test_the_model_refuses_a_non_http_webhook_for_every_writer_such_as_the_admin():
    config = cMetricSettings.load()
    config.alert_webhook_url = "ftp://alerts.example.com/hook"
    with pytest.raises(ValidationError) as refused:
        config.full_clean()
    assert list(refused.value.message_dict) == ["alert_webhook_url"]


def test_a_post_claiming_100000_override_forms_is_refused_having_built_only_a_few(client, superadmin):
    client.force_login(superadmin)
    response = client.post(METRICS, threshold_post(**{"overrides__TOTAL_FORMS": 100000}))
    assert response.status_code == 400
    formset = response.context["formset"]
    assert len(formset.forms) == MAX_OVERRIDES + 1 == len(QUEUE_NAMES) + 1
    assert f"Please submit at most {MAX_OVERRIDES} forms." in formset.non_form_errors()
    assert f"Please submit at most {MAX_OVERRIDES} forms." in response.content.decode()


def test_one_override_per_queue_still_fits(client, superadmin):
    client.force_login(superadmin)
    changes = {"overrides__TOTAL_FORMS": len(QUEUE_NAMES)}
    for i, queue in enumerate(QUEUE_NAMES):
        changes.update({f"overrides__{i}__queue": queue, f"overrides__{i}__warn": 1, f"overrides__{i}__critical": 2})
    response = client.post(METRICS, threshold_post(**changes))
    assert response.status_code == 302, response.context["formset"].errors
