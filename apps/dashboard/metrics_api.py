"""The one place where the page reaches into apps.metrics (the controller's side).

docs/metrics.md ("The snapshot") documents these names and the snapshot JSON;
everything in apps/dashboard imports them from here, so a change on the
controller's side is one edit.
"""

from apps.metrics.auth import is_superadmin
from apps.metrics.forms import MetricSettingsForm, QueueThresholdFormSet
from apps.metrics.models import QueueThreshold, cMetricSettings
from apps.metrics.snapshot import GROUP, CacheUnavailable, latest_snapshot

__all__ = ["GROUP", "CacheUnavailable", "MetricSettingsForm", "QueueThreshold", "QueueThresholdFormSet",
           "cMetricSettings", "is_superadmin", "latest_snapshot"]
