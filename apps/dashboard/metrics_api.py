"""The one place where the page reaches into apps.metrics (the controller's side).

CONTRACT.md fixes these names; everything in apps/dashboard imports them from
here, so a change on the controller's side is one edit.
"""

from __future__ import annotations

try:
    from apps.metrics.auth import is_superadmin
    from apps.metrics.snapshot import GROUP, CacheUnavailable, latest_snapshot
except ImportError:  # pragma: no cover - until the controller's modules land (CONTRACT.md)
    from django.core.cache import cache

    from apps.dashboard.cache_errors import CACHE_ERRORS
    from workers import cache_families

    GROUP = "superadmin_metrics"

    class CacheUnavailable(RuntimeError):
        pass

    def is_superadmin(user) -> bool:
        return bool(user is not None and user.is_active and user.is_superuser)

    def latest_snapshot():
        try:
            return cache.get(cache_families.key("metrics_snapshot", "latest"))
        except CACHE_ERRORS as exc:
            raise CacheUnavailable(str(exc)) from exc

try:
    from apps.metrics.forms import MetricSettingsForm, QueueThresholdFormSet
    from apps.metrics.models import cMetricSettings
except ImportError:  # pragma: no cover - until the controller's modules land
    MetricSettingsForm = QueueThresholdFormSet = cMetricSettings = None

__all__ = ["GROUP", "CacheUnavailable", "MetricSettingsForm", "QueueThresholdFormSet", "cMetricSettings",
           "is_superadmin", "latest_snapshot"]
