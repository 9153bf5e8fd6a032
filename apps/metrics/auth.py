"""Who may read metrics: superadmins, or a bearer token (METRICS_API_TOKEN).

* a request with ``Authorization: Bearer <token>`` is let in when the token
  equals METRICS_API_TOKEN (compared in constant time); a wrong token, or any
  token while METRICS_API_TOKEN is empty, is refused with 401;
* otherwise an active superuser session is let in;
* an anonymous request gets 401, a signed-in non-superadmin 403.
"""

from __future__ import annotations

import hmac
from functools import wraps
from typing import Any, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def is_superadmin(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.is_superuser)


def bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def token_matches(given: str) -> bool:
    expected = getattr(settings, "METRICS_API_TOKEN", "") or ""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _refuse(status: int, error: str, detail: str) -> HttpResponse:
    response = JsonResponse({"error": error, "detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="flowwatch metrics"'
    return response


def metrics_access(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Let superadmins and bearers of METRICS_API_TOKEN in; 401/403 for the rest."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = bearer_token(request)
        if token is not None:
            if token_matches(token):
                return view(request, *args, **kwargs)
            return _refuse(401, "invalid_token", "The bearer token is not valid.")
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return _refuse(401, "authentication_required",
                           "Sign in as a superadmin or send Authorization: Bearer <METRICS_API_TOKEN>.")
        if not is_superadmin(user):
            return _refuse(403, "forbidden", "Only superadmins may read metrics.")
        return view(request, *args, **kwargs)

    return guarded
