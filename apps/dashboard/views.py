"""The superadmin metrics page, the occupancy endpoint, login and the docs."""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import Any

from django.apps import apps as django_apps
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from apps.dashboard import docs
from apps.dashboard.access import superadmin_api, superadmin_page
from apps.dashboard.metrics_api import (
    CacheUnavailable,
    MetricSettingsForm,
    QueueThresholdFormSet,
    cMetricSettings,
    is_superadmin,
    latest_snapshot,
)
from config import redis_layout
from workers import occupancy, queues, routing
from workers.collect_keys import BrokerKeys

OVERRIDES_PREFIX = "overrides"
# The page polls /api/metrics/ this often while the websocket is down.
POLL_SECONDS = 3
# What occupies Redis is sampled at most this often per web process.
OCCUPANCY = occupancy.CachedReport(
    max_age=15.0,
    build=lambda: occupancy.report(
        broker_keys=BrokerKeys.from_options(settings.CELERY_BROKER_TRANSPORT_OPTIONS)),
)


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True
    next_page = "dashboard:home"


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/home.html", {"is_superadmin": is_superadmin(request.user)})


# --- /superadmin/metrics/ --------------------------------------------------

@superadmin_page
@never_cache
@require_http_methods(["GET", "POST"])
def metrics_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _save_thresholds(request)
    return _render_metrics(request, *_threshold_forms())


def _threshold_forms(data: Any = None) -> tuple[Any, Any]:
    form = MetricSettingsForm(data, instance=cMetricSettings.load())
    return form, QueueThresholdFormSet(data, prefix=OVERRIDES_PREFIX)


def _save_thresholds(request: HttpRequest) -> HttpResponse:
    form, formset = _threshold_forms(request.POST)
    if not (form.is_valid() and formset.is_valid()):
        return _render_metrics(request, form, formset, status=400)
    with transaction.atomic():
        form.save()
        formset.save()
    messages.success(request, "Thresholds saved. The controller applies them at its next tick.")
    return redirect(reverse("dashboard:metrics") + "#thresholds")


@functools.cache  # routes are fixed once the task modules are imported
def _reserved_queues() -> tuple[str, ...]:
    """Queues with no task yet: the page marks them instead of showing them as idle work."""
    for config in django_apps.get_app_configs():  # every app's tasks, so that every route is known
        if config.name.startswith("apps.") and importlib.util.find_spec(f"{config.name}.tasks"):
            importlib.import_module(f"{config.name}.tasks")
    return routing.reserved_queues()


def _render_metrics(request: HttpRequest, form: Any, formset: Any, status: int = 200) -> HttpResponse:
    snapshot, snapshot_error = _read_snapshot()
    context = {
        "snapshot": snapshot,
        "snapshot_error": snapshot_error,
        "families": queues.FAMILIES,
        "reserved": _reserved_queues(),
        "roles": _role_rows(),
        "redis_local": settings.REDIS_LAYOUT.redis_local,
        "form": form,
        "formset": formset,
        "page_config": {
            "ws_path": "/ws/superadmin/metrics/",
            "api_url": "/api/metrics/",
            "history_url": "/api/metrics/history/",
            "occupancy_url": reverse("dashboard:occupancy"),
            "poll_seconds": POLL_SECONDS,
            "redis_local": settings.REDIS_LAYOUT.redis_local,
        },
    }
    return render(request, "dashboard/metrics.html", context, status=status)


def _read_snapshot() -> tuple[dict | None, str | None]:
    """The latest snapshot, or a sentence saying why there is none."""
    try:
        snapshot = latest_snapshot()
    except CacheUnavailable as exc:
        return None, f"The cache Redis is unavailable, so the latest figures cannot be read ({exc})."
    if snapshot is None:
        return None, "No snapshot yet: is the controller (manage.py run_controller) running?"
    return snapshot, None


def _role_rows() -> list[dict[str, Any]]:
    """Where each role lives, from the layout (passwords never leave it)."""
    layout = settings.REDIS_LAYOUT
    rows = []
    for role in redis_layout.ROLES:
        summary = layout.roles[role].summary() if role in layout.roles else {}
        rows.append({"role": role, **summary})
    return rows


@superadmin_api
@never_cache
@require_GET
def occupancy_api(request: HttpRequest) -> JsonResponse:
    """What occupies each Redis; sampled within budgets, reused for 15 s."""
    report = OCCUPANCY.get(refresh=request.GET.get("refresh") == "1")
    return JsonResponse(report)


# --- /docs/ ----------------------------------------------------------------

@login_required
@require_GET
def docs_home(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/docs_index.html", {"docs": docs.all_docs()})


@login_required
@require_GET
def doc_page(request: HttpRequest, slug: str) -> HttpResponse:
    page = docs.render(slug)
    if page is None:
        raise Http404("no such doc")
    return render(request, "dashboard/doc.html", {"page": page, "docs": docs.all_docs()})


@login_required
@require_GET
def doc_asset(request: HttpRequest, name: str) -> FileResponse:
    path = docs.asset_path(name)
    if path is None:
        raise Http404("no such file")
    return FileResponse(path.open("rb"))


@login_required
@require_GET
def docs_search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    context = docs.context_for_search(query) if query else {"query": "", "hits": [], "index_source": None}
    context["docs"] = docs.all_docs()
    return render(request, "dashboard/docs_search.html", context)
