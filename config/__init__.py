"""Project configuration.

Deliberately imports nothing: ``boot.py`` imports ``config.redis_layout`` and
``config.env`` before Django or Celery are installed.  The Celery app is
loaded by ``apps.core.apps.CoreConfig.ready``.
"""
