"""Threshold forms; the metrics page (apps/dashboard) renders and posts them.

Validation lives in the models' ``clean()`` so the admin, these forms and any
other writer agree: warn below critical, percents 0-100, counts >= 0, and
every error is attached to the field it is about.
"""

from __future__ import annotations

from django import forms

from apps.metrics.models import (HISTORY_AND_ALERT_FIELDS, THRESHOLD_FIELDS, QueueThreshold,
                                 cMetricSettings)
from workers.queues import QUEUE_NAMES


class MetricSettingsForm(forms.ModelForm):
    alert_webhook_url = forms.URLField(required=False, assume_scheme="https",
                                       help_text="Optional: each alert is POSTed here as JSON.")

    class Meta:
        model = cMetricSettings
        fields = [*THRESHOLD_FIELDS, *HISTORY_AND_ALERT_FIELDS]
        widgets = {"alert_emails": forms.Textarea(attrs={"rows": 2})}


class QueueThresholdForm(forms.ModelForm):
    # The blank first choice keeps an untouched "add an override" row
    # unchanged, so the formset skips it instead of demanding a queue.
    queue = forms.ChoiceField(choices=[("", "— add an override —"), *((q, q) for q in QUEUE_NAMES)])

    class Meta:
        model = QueueThreshold
        fields = ["queue", "warn", "critical"]


QueueThresholdFormSet = forms.modelformset_factory(
    QueueThreshold, form=QueueThresholdForm, extra=1, can_delete=True,
)
