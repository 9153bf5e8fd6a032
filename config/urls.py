from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("apps.core.urls")),
    path("", include("apps.metrics.urls")),
    path("", include("apps.dashboard.urls")),
    path("", include("apps.stats.urls")),
    path("", include("apps.tenants.urls")),
    path("admin/", admin.site.urls),
]
