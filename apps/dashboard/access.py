"""Who may see the superadmin pages: one rule, reused by views and consumers."""

from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.dashboard.metrics_api import is_superadmin

View = Callable[..., HttpResponse]


def superadmin_page(view: View) -> View:
    """Anonymous: redirect to the login page. Logged in but not superadmin: 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_superadmin(request.user):
            raise PermissionDenied("superadmins only")
        return view(request, *args, **kwargs)

    return wrapper


def superadmin_api(view: View) -> View:
    """JSON endpoints answer 403 JSON instead of redirecting."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_superadmin(request.user):
            return JsonResponse({"error": "forbidden", "detail": "superadmins only"}, status=403)
        return view(request, *args, **kwargs)

    return wrapper
