from django.urls import path

from apps.metrics import views

urlpatterns = [
    path("api/metrics/", views.api_metrics, name="api_metrics"),
    path("api/metrics/history/", views.api_metrics_history, name="api_metrics_history"),
    path("metrics", views.prometheus_metrics, name="prometheus_metrics"),
]
