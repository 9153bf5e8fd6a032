from django.contrib.auth import views as auth_views
from django.urls import path

from apps.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("superadmin/metrics/", views.metrics_page, name="metrics"),
    path("api/superadmin/occupancy/", views.occupancy_api, name="occupancy"),
    path("docs/", views.docs_home, name="docs"),
    path("docs/search/", views.docs_search, name="docs-search"),
    path("docs/files/<str:name>", views.doc_asset, name="doc-asset"),
    path("docs/<str:slug>/", views.doc_page, name="doc"),
]
