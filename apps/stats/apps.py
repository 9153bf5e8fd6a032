from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "apps.stats"
    verbose_name = "Message statistics"

    def ready(self) -> None:
        from apps.stats import cache  # noqa: F401  registers the message_stats rebuilder in every process
