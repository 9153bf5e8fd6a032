"""Per-queue overrides: warn must be strictly below critical, on every path that saves one."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.metrics.forms import QueueThresholdFormSet
from apps.metrics.models import QueueThreshold

pytestmark = pytest.mark.django_db


def posted(name: str, warn: int, critical: int) -> dict[str, str]:
    return {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "0",
            "form-0-queue": name, "form-0-warn": str(warn), "form-0-critical": str(critical)}


@pytest.mark.parametrize("warn, critical", [(100, 100), (101, 100)])
def test_an_override_whose_warn_is_not_below_critical_is_refused_and_not_saved(warn, critical):
    formset = QueueThresholdFormSet(posted("ai", warn, critical), queryset=QueueThreshold.objects.none())
    assert not formset.is_valid()
    assert formset.errors[0] == {
        "warn": [f"The warn threshold ({warn}) must be below the critical one ({critical})."]}
    assert not QueueThreshold.objects.exists()


def test_the_model_refuses_warn_equal_to_critical_for_any_writer():
    with pytest.raises(ValidationError) as refused:
        QueueThreshold(queue="ai", warn=50, critical=50).full_clean()
    assert list(refused.value.message_dict) == ["warn"]


def test_an_override_just_below_critical_is_saved():
    formset = QueueThresholdFormSet(posted("ai", 99, 100), queryset=QueueThreshold.objects.none())
    assert formset.is_valid(), formset.errors
    formset.save()
    assert QueueThreshold.objects.get(queue="ai").warn == 99
