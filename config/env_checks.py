"""Problems no single variable's reader sees (standard library only).

``boot.py check``/``up`` and Django's system checks (``flowwatch.E002``) both
report these, each as one line naming the variable: a database scheme
Flowwatch does not run on, both e-mail TLS modes, a URL with spaces around
it.  Each would otherwise be accepted and fail later, in migrate or at the
first alert.
"""

from __future__ import annotations

import re
from typing import Mapping

from config import env as schema
from config.redis_urls import LayoutError, mask_url

# dj-database-url knows more (mysql, oracle, ...); Flowwatch is built and
# tested on these two, and their drivers are in requirements.txt.
DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")
DATABASE_EXAMPLE = "postgres://user:password@host:5432/flowwatch or sqlite:////path/to/db.sqlite3"


def problems(env: Mapping[str, str]) -> list[str]:
    """Every cross-variable and URL-shape problem of ``env``; never raises."""
    found: list[str] = []
    for check in (_database_problems, _email_problems, _https_problems):
        try:
            found += check(env)
        except LayoutError:
            pass  # a variable its own reader refuses: reported by that reader
    return found


def database_problem(url: str) -> str | None:
    """Why DATABASE_URL ``url`` is refused, or None (its password is never shown)."""
    scheme, sep, _rest = url.partition("://")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        return f"DATABASE_URL={mask_url(url)!r} is not a database URL such as {DATABASE_EXAMPLE}"
    if scheme not in DATABASE_SCHEMES:
        return (f"DATABASE_URL: scheme {scheme!r} is not supported; use postgres:// (or postgresql://) "
                "or sqlite://")
    return None


def _database_problems(env: Mapping[str, str]) -> list[str]:
    raw = env.get("DATABASE_URL", "")
    if raw.strip() and raw != raw.strip() and not env.get("DATABASE_URL_FILE", "").strip():
        return [f"DATABASE_URL: leading or trailing whitespace around {mask_url(raw.strip())!r}; remove it"]
    url = str(schema.value("DATABASE_URL", env) or "")
    problem = database_problem(url) if url else None
    return [problem] if problem else []


def _email_problems(env: Mapping[str, str]) -> list[str]:
    if schema.value("EMAIL_USE_TLS", env) and schema.value("EMAIL_USE_SSL", env):
        # Django's SMTP backend raises at the first alert e-mail.
        return ["EMAIL_USE_TLS and EMAIL_USE_SSL are both true: choose one (STARTTLS, usually port 587, "
                "or implicit TLS, usually port 465)"]
    return []


def _https_problems(env: Mapping[str, str]) -> list[str]:
    """HSTS without HTTPS would be sent on plain HTTP, where browsers ignore it."""
    if schema.value("DJANGO_HSTS_SECONDS", env) and not schema.value("DJANGO_HTTPS", env):
        return ["DJANGO_HSTS_SECONDS is set but DJANGO_HTTPS is false: HSTS applies only to a site "
                "served over HTTPS; set DJANGO_HTTPS=true or drop DJANGO_HSTS_SECONDS"]
    return []
