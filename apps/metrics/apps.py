from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "apps.metrics"
    verbose_name = "Queue and Redis metrics"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.metrics.counters import count_event
        from apps.metrics.models import MetricEvent

        # Counted when saved, so that pruning old events never lowers a counter.
        post_save.connect(count_event, sender=MetricEvent, dispatch_uid="flowwatch.count_event")
