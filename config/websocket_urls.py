"""Websocket routes; each app appends its consumers here."""

from django.urls import path

from apps.dashboard.consumers import MetricsConsumer

websocket_urlpatterns: list = [
    path("ws/superadmin/metrics/", MetricsConsumer.as_asgi()),
]
