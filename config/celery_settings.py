"""Celery's settings: the ``CELERY_*`` names of Django settings, without the prefix.

Only these, under Celery's own names: ``celery inspect conf`` and ``inspect
report`` print every setting the app holds, and Celery masks only what it
recognises (``broker_url``, ``result_backend``, keys that look secret).
Handed the whole of Django's settings it would also print ``CACHES``,
``CHANNEL_LAYERS`` and the Redis layout, passwords and all.
"""

from __future__ import annotations

from django.conf import settings

PREFIX = "CELERY_"

SETTINGS: dict[str, object] = {
    name[len(PREFIX):].lower(): getattr(settings, name) for name in dir(settings) if name.startswith(PREFIX)
}
