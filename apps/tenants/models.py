"""Tenants Flowwatch reads, and the state of reading them.

A tenant's ``watermark`` is the LogEnd up to which every message is stored:
hot reads start a little before it (the overlap window) and move it only
after a page is durably staged.  Backfill is cut into :class:`BackfillWindow`
rows, each read by one ``messagelog_read_cold`` task.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.tenants import secrets

OAUTH, BASIC = "oauth", "basic"
AUTH_CHOICES = [(OAUTH, "OAuth2 client credentials"), (BASIC, "Basic auth (user, password)")]


class Tenant(models.Model):
    name = models.CharField(max_length=100, unique=True)
    api_url = models.URLField("API root URL", max_length=500,
                              help_text="The service key's url + /api/v1")
    auth = models.CharField(max_length=10, choices=AUTH_CHOICES, default=OAUTH)
    token_url = models.URLField("token URL", max_length=500, blank=True,
                                help_text="OAuth2 only: the service key's tokenurl")
    client_id = models.CharField("client id / user", max_length=200)
    secret_encrypted = models.TextField(blank=True, editable=False)
    poll_interval = models.PositiveIntegerField(
        "poll interval (s)", default=60, validators=[MinValueValidator(5), MaxValueValidator(86400)])
    backfill_days = models.PositiveIntegerField(
        default=7, validators=[MaxValueValidator(365)],
        help_text="How far back the first read goes, and how far a gap is filled")
    enabled = models.BooleanField(default=True)
    # Reading state: written by the tasks, never by the forms.
    watermark = models.DateTimeField(null=True, blank=True, editable=False)
    last_poll_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_read_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = secrets.encrypt(secret)

    def client_config(self):
        """The client's settings for this tenant, with the secret decrypted."""
        from apps.tenants.client import TenantConfig

        return TenantConfig(name=self.name, api_url=self.api_url, auth=self.auth, token_url=self.token_url,
                            client_id=self.client_id, client_secret=secrets.decrypt(self.secret_encrypted))


class BackfillWindow(models.Model):
    """One cold window [start, end) of a tenant's history to read."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="backfill_windows")
    start = models.DateTimeField()
    end = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)  # last time a read was queued
    done_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    entries = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-end"]
        constraints = [models.UniqueConstraint(fields=["tenant", "start", "end"], name="backfill_window_once")]
        indexes = [models.Index(fields=["tenant", "done_at"])]

    def __str__(self) -> str:
        return f"{self.tenant} {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"
