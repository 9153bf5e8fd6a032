"""The one place where the page reaches into apps.metrics (the controller's side).

docs/metrics.md ("The snapshot") documents these names and the snapshot JSON;
everything in apps/dashboard imports them from here, so a change on the
controller's side is one edit.
"""

from apps.metrics.auth import is_superadmin
from apps.metrics.forms import MetricSettingsForm, QueueThresholdFormSet
from apps.metrics.models import QueueThreshold, cMetricSettings
from apps.metrics.snapshot import (FRAME_HEAD, FRAME_TAIL, GROUP, MESSAGE_TYPE, CacheUnavailable, latest_snapshot,
                                   latest_snapshot_json)

__all__ = ["FRAME_HEAD", "FRAME_TAIL", "GROUP", "MESSAGE_TYPE", "CacheUnavailable", "MetricSettingsForm", "QueueThreshold", "QueueThresholdFormSet",
           "cMetricSettings", "is_superadmin", "latest_snapshot",
           "latest_snapshot_json"]
