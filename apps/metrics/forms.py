"""Threshold forms; the metrics page (apps/dashboard) renders and posts them.

Validation lives in the models' ``clean()`` so the admin, these forms and any
other writer agree: warn below critical, percents 0-100, counts >= 0, and
every error is attached to the field it is about.
"""

from __future__ import annotations

from django import forms
from django.core.validators import URLValidator

from apps.metrics.models import (HISTORY_AND_ALERT_FIELDS, THRESHOLD_FIELDS, QueueThreshold,
                                 cMetricSettings)
from workers.queues import QUEUE_NAMES


class MetricSettingsForm(forms.ModelForm):
    alert_webhook_url = forms.URLField(required=False, assume_scheme="https",
                                       validators=[URLValidator(schemes=["http", "https"],
                                                                message="Enter an http:// or https:// URL.")],
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


# One override per declared queue at most.  absolute_max bounds the forms
# Django builds from a posted TOTAL_FORMS (its default would build 2000 for
# TOTAL_FORMS=100000); more is refused as "Please submit at most N forms".
MAX_OVERRIDES = len(QUEUE_NAMES)
QueueThresholdFormSet = forms.modelformset_factory(
    QueueThreshold, form=QueueThresholdForm, extra=1, can_delete=True,
    max_num=MAX_OVERRIDES, validate_max=True, absolute_max=MAX_OVERRIDES + 1,
)
