"""ASGI entry point: HTTP through Django, websockets through Channels.

The Django HTTP app is built once, before any consumer is imported, so that
the app registry is ready when consumers import models.  It runs each
request's middleware chain and view as one sync call, on the event loop's
thread pool or, for a view that does no I/O (``/healthz``), on the loop
itself (config/http.py, and docs/performance.md for why).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from config.http import SyncChainHandler  # noqa: E402

django_asgi_app = SyncChainHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.websocket_urls import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
