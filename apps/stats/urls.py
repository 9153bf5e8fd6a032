from django.urls import path

from apps.stats import views

urlpatterns = [
    path("api/stats/", views.api_stats, name="api_stats"),
]
