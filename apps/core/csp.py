"""Content-Security-Policy on every response: scripts and styles from this site's files only.

No page has an inline script, an event-handler attribute or a style
attribute (the metrics page reads its data from ``json_script`` blocks, which
are data, not script), so the policy forbids them all: an injected
``<script>`` or ``onerror=`` does not run.  The websocket of the metrics page
is same-origin, which ``connect-src 'self'`` allows.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

HEADER = "Content-Security-Policy"
POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",  # the empty data: favicon of base.html
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Sets the policy unless a view chose its own."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response.headers.setdefault(HEADER, POLICY)
        return response
