"""Liveness and readiness: no login, no secrets, never a hang."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.http import runs_on_event_loop
from workers.redis_clients import ping_roles


@runs_on_event_loop  # no I/O: the one call runs on the event loop, no thread hand-over (config/http.py)
@require_GET
@never_cache
def healthz(request):
    """200 as long as this process serves requests."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request):
    """200 when the database and all four Redis roles answer; else 503 naming them."""
    failing = [role for role, ok in ping_roles().items() if not ok]
    if not _database_answers():
        failing.insert(0, "database")
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    return JsonResponse({"status": "ok", "failing": []})


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False
