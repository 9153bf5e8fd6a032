"""Django's message middleware, with the storage made only when a request uses it.

Django's ``MessageMiddleware`` builds the cookie-and-session storage (a
cookie signer, two backends) for every request, although only the pages
and the admin ever add or show a message: about a tenth of what the
middleware chain costs a ``/healthz`` or an ``/api/metrics/``
(docs/performance.md, "Web").  Here ``request._messages`` is a lazy object
that builds the same storage on first use; a response whose request never
touched it has nothing to store, so it is left alone.
"""

from __future__ import annotations

from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty


class LazyMessageMiddleware(MessageMiddleware):
    """``MessageMiddleware`` whose storage is made on the request's first use of it."""

    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        messages = getattr(request, "_messages", None)
        if type(messages) is SimpleLazyObject and messages._wrapped is empty:  # type(): no evaluation
            return response  # never read nor added to: nothing to store
        return super().process_response(request, response)
