"""Error reports (DJANGO_DEBUG pages, admin e-mails) that never show a Redis password."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class RedisAwareReporterFilter(SafeExceptionReporterFilter):
    """Django hides settings named like API/TOKEN/KEY/SECRET/PASS/SIGNATURE;
    Flowwatch's Redis URLs (CELERY_BROKER_URL, CACHES, CHANNEL_LAYERS,
    REDIS_LAYOUT, ...) carry passwords under other names."""

    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|BROKER|BACKEND|CACHES|CHANNEL|LAYOUT|DATABASES",
        flags=re.I,
    )
