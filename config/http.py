"""Django's HTTP side under ASGI with the whole request in one worker-thread call.

Django's own ``ASGIHandler`` runs every middleware that is not async-native
through ``sync_to_async``: with the chain in config/settings.py that is a
dozen hand-overs between the event loop and a thread per request, plus a new
thread per request for its thread-sensitive context, which cost several
times the request itself (docs/performance.md, "Web").  :class:`SyncChainHandler`
loads the middleware in sync mode, as a WSGI server would, and runs
``request_started``, the chain, the view and (for an ordinary response)
``response.close()`` with ``request_finished`` in ONE call on the loop's
thread pool.  Only the socket I/O stays on the event loop.

What it gives up: an async view would run through ``async_to_sync`` (there
is none; websockets go through Channels, not here), and a client that
disconnects does not cancel a running view (sync views cannot be cancelled
under ASGI either).  Streaming responses (WhiteNoise's static files) are
sent as Django sends them and closed after the last chunk.

A view marked :func:`runs_on_event_loop` (it reads nothing from a database,
a cache or the network: ``/healthz``) has the same one call made on the
event loop itself, without the hand-over to a thread, which costs a 1-client
request about as much as Django's chain does.  :func:`runs_on_event_loop_when`
marks a view that does no I/O for some requests only (``/api/metrics/`` for a
bearer token while the process holds fresh snapshot bytes).  The chain on such a path does
no I/O either: the session, the user and the messages are lazy and nothing
reads them; a database query there would raise Django's
``SynchronousOnlyOperation`` (a 500) rather than stall the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Callable

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import HttpResponseBase
from django.urls import Resolver404, get_resolver, set_script_prefix

# Paths whose view runs on the event loop, remembered per path; cleared
# when it holds this many (a crawler's distinct 404s must not grow it).
LOOP_PATHS_MAX = 1024


def runs_on_event_loop(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that does no I/O at all: SyncChainHandler runs its request on the event loop."""
    view.runs_on_event_loop = True  # type: ignore[attr-defined]
    return view


def runs_on_event_loop_when(condition: Callable[[dict[str, Any]], bool]) -> Callable[[Callable[..., Any]], Any]:
    """Mark a view that does no I/O for the requests whose scope ``condition`` accepts.

    ``condition`` runs on the event loop for every request to the view, so it
    must itself do no I/O; what it found may be left in the scope for the
    view (``request.scope``).  Put the marker outermost, above decorators
    that do not copy attributes.
    """
    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.runs_on_event_loop = condition  # type: ignore[attr-defined]
        return view

    return mark


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function`` on the loop's thread pool with a copy of this context.

    The whole request is this one call, so its database connection stays on
    one thread; the pool's threads are reused rather than one made per request.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, contextvars.copy_context().run, function, *args)


class SyncChainHandler(ASGIHandler):
    """An ASGI app for HTTP whose middleware chain and view run as one sync call."""

    def __init__(self) -> None:
        # BaseHandler's, not ASGIHandler's: that one would first build the chain in async mode.
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self._loop_paths: dict[tuple[str, str], bool | Callable[[dict[str, Any]], bool]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # No ThreadSensitiveContext: nothing here is thread-sensitive across
        # calls, since the whole request is one call.
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        if self._on_loop(scope):
            response = contextvars.copy_context().run(self._respond, scope, body_file)
        else:
            response = await _in_thread(self._respond, scope, body_file)
        if not response.streaming:
            await self.send_response(response, send)
            return
        try:
            await self.send_response(response, send)
        finally:
            await _in_thread(self._finish, response, body_file)

    def _on_loop(self, scope: dict[str, Any]) -> bool:
        """Whether ``scope``'s path resolves (by ROOT_URLCONF) to a view marked runs_on_event_loop,
        and, for a view marked with a condition, whether this request meets it."""
        marker = self._marker(scope)
        return marker(scope) if callable(marker) else marker

    def _marker(self, scope: dict[str, Any]) -> bool | Callable[[dict[str, Any]], bool]:
        script_name = get_script_prefix(scope)
        key = (script_name, scope["path"])
        found = self._loop_paths.get(key)
        if found is None:
            path_info = scope["path"].removeprefix(script_name) if script_name else scope["path"]
            try:
                match = get_resolver().resolve(path_info)
            except Resolver404:
                found = False
            else:
                found = getattr(match.func, "runs_on_event_loop", False)
            if len(self._loop_paths) >= LOOP_PATHS_MAX:
                self._loop_paths.clear()
            self._loop_paths[key] = found
        return found

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
        if not response.streaming:  # its content is in memory: close now, before sending
            self._finish(response, body_file)
        return response

    @staticmethod
    def _finish(response: HttpResponseBase, body_file: Any) -> None:
        """``response.close()`` sends request_finished, which closes the database connection."""
        try:
            response.close()
        finally:
            body_file.close()
