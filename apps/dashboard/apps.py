from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "apps.dashboard"
    verbose_name = "Superadmin dashboard and docs"

    def ready(self) -> None:
        # Every process that loads Django registers it, the stats_cache worker
        # included: rebuild_caches (after a Redis restart, and from beat)
        # then refills the docs search index at once.
        from apps.dashboard import docs
        from workers.rebuild import rebuilder

        rebuilder("docs_index")(docs.rebuild_index)
