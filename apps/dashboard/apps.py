from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "apps.dashboard"
    verbose_name = "Superadmin dashboard and docs"

    def ready(self) -> None:
        # Every process that loads Django registers it, the stats_cache worker
        # included: rebuild_caches (after a Redis restart, and from beat)
        # then refills the docs search index at once.  The docs module (and
        # Markdown with it) is imported when the rebuilder runs, not in every
        # process at start (docs/performance.md, "Memory").
        from workers.rebuild import rebuilder

        rebuilder("docs_index")(rebuild_docs_index)


def rebuild_docs_index() -> int:
    from apps.dashboard import docs

    return docs.rebuild_index()
