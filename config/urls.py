from django.contrib import admin
from django.urls import include, path

# INSTALLED_APPS has SimpleAdminConfig: the apps' admin.py modules are loaded
# here, where the admin is served, and not in every process that sets up Django.
admin.autodiscover()

urlpatterns = [
    path("", include("apps.core.urls")),
    path("", include("apps.metrics.urls")),
    path("", include("apps.dashboard.urls")),
    path("", include("apps.stats.urls")),
    path("", include("apps.tenants.urls")),
    path("admin/", admin.site.urls),
]
