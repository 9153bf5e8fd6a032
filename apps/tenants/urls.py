from django.urls import path

from apps.tenants import views

urlpatterns = [
    path("superadmin/tenants/", views.tenant_list, name="tenant_list"),
    path("superadmin/tenants/add/", views.tenant_edit, name="tenant_add"),
    path("superadmin/tenants/<int:tenant_id>/", views.tenant_edit, name="tenant_edit"),
]
