import logging

from django.apps import AppConfig

logger = logging.getLogger("flowwatch")


class CoreConfig(AppConfig):
    name = "apps.core"
    verbose_name = "Flowwatch core"

    def ready(self) -> None:
        from django.conf import settings

        import config.celery  # noqa: F401  binds @shared_task to the app
        from apps.core import checks  # noqa: F401  registers system checks

        # REDIS_TLS_INSECURE and friends warn at every start of every process.
        # The id lets an operator find the warning in docs/configuration.md.
        for code, text in settings.REDIS_LAYOUT.findings:
            logger.warning("redis layout: %s: %s", code, text)
