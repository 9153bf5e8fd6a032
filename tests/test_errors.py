"""Django's error report never shows a Redis password."""

from __future__ import annotations

from django.test import RequestFactory
from django.views.debug import ExceptionReporter

# Built at run time, so the report's own source-code excerpts cannot show it.
PASSWORD = "hunter" + "2-" + "redis"


def point_redis_at_password_protected_hosts(settings) -> None:
    settings.CELERY_BROKER_URL = f"redis://:{PASSWORD}@broker.internal:6379/0"
    settings.CACHES = {"default": {**settings.CACHES["default"],
                                   "LOCATION": f"redis://:{PASSWORD}@cache.internal:6379/2"}}


def failing_view(request):
    raise RuntimeError("boom")


def test_the_debug_error_report_hides_redis_urls(settings):
    point_redis_at_password_protected_hosts(settings)
    request = RequestFactory().get("/")
    try:
        failing_view(request)
    except RuntimeError as exc:
        html = ExceptionReporter(request, type(exc), exc, exc.__traceback__).get_traceback_html()
    assert "boom" in html
    assert "CELERY_BROKER_URL" in html  # the setting is listed ...
    assert PASSWORD not in html  # ... but its value is hidden
