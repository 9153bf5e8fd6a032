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
from django.urls import set_script_prefix


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
        response = await _in_thread(self._respond, scope, body_file)
        if not response.streaming:
            await self.send_response(response, send)
            return
        try:
            await self.send_response(response, send)
        finally:
            await _in_thread(self._finish, response, body_file)

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
