"""The tenant form shared by the admin and the superadmin page.

The secret field is write-only: it is never rendered back, and leaving it
empty keeps the stored secret.
"""

from __future__ import annotations

from django import forms

from apps.tenants.models import OAUTH, Tenant


class TenantForm(forms.ModelForm):
    api_url = forms.URLField(label="API root URL", max_length=500, assume_scheme="https",
                             help_text="The service key's url + /api/v1")
    token_url = forms.URLField(label="Token URL", max_length=500, required=False, assume_scheme="https",
                               help_text="OAuth2 only: the service key's tokenurl")
    secret = forms.CharField(
        label="Client secret / password", required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Never shown again after saving. Leave empty to keep the stored one.")

    class Meta:
        model = Tenant
        fields = ["name", "api_url", "auth", "token_url", "client_id", "secret", "poll_interval",
                  "backfill_days", "enabled"]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("auth") == OAUTH and not data.get("token_url"):
            self.add_error("token_url", "OAuth2 needs the token URL of the service key.")
        if not data.get("secret") and not self.instance.has_secret:
            self.add_error("secret", "A new tenant needs its client secret (or password).")
        return data

    def save(self, commit: bool = True) -> Tenant:
        tenant = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            tenant.set_secret(self.cleaned_data["secret"])
        if commit:
            tenant.save()
        return tenant
