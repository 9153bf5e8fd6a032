"""/superadmin/tenants/: list, add and edit tenants (superadmins only)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from apps.dashboard.access import superadmin_page
from apps.tenants.connections import forget
from apps.tenants.forms import TenantForm
from apps.tenants.models import Tenant


@superadmin_page
def tenant_list(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/list.html", {"tenants": Tenant.objects.all()})


@superadmin_page
def tenant_edit(request: HttpRequest, tenant_id: int | None = None) -> HttpResponse:
    tenant = get_object_or_404(Tenant, id=tenant_id) if tenant_id else Tenant()
    form = TenantForm(request.POST or None, instance=tenant)
    if request.method == "POST":
        if form.is_valid():
            saved = form.save()
            forget(saved.id)
            messages.success(request, f"Tenant {saved.name} saved.")
            return redirect("tenant_list")
        return render(request, "tenants/edit.html", {"form": form, "tenant": tenant}, status=400)
    return render(request, "tenants/edit.html", {"form": form, "tenant": tenant})
