"""``manage.py register_simulator_tenant``: the bundled simulator as the tenant ``simulator``.

``boot.py up`` runs it when ``SIMULATOR=true``.  The tenant is created once;
later starts only keep its URLs and credentials in step with the simulator
(a changed ``SIMULATOR_PORT``), and leave what an operator chose — enabled or
not, poll interval, backfill days — as it is.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.tenants.models import OAUTH, Tenant
from config.env import value

NAME = "simulator"
# A lively demo: a read every 15 s, and one day of history on first start.
DEMO_POLL_INTERVAL = 15
DEMO_BACKFILL_DAYS = 1


class Command(BaseCommand):
    help = "Create or update the tenant 'simulator' that reads the bundled tenant simulator."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--api-url", required=True, help="the simulator's API root, ending in /api/v1")
        parser.add_argument("--token-url", required=True, help="the simulator's OAuth2 token URL")

    @transaction.atomic
    def handle(self, *args: Any, api_url: str, token_url: str, **options: Any) -> None:
        # The simulator reads the same variables, so both sides agree on the demo credentials.
        client_id, secret = str(value("SIMULATOR_CLIENT_ID")), str(value("SIMULATOR_CLIENT_SECRET"))
        tenant = Tenant.objects.select_for_update().filter(name=NAME).first()
        created = tenant is None
        if created:
            tenant = Tenant(name=NAME, poll_interval=DEMO_POLL_INTERVAL, backfill_days=DEMO_BACKFILL_DAYS)
        tenant.api_url, tenant.token_url, tenant.auth, tenant.client_id = api_url, token_url, OAUTH, client_id
        tenant.set_secret(secret)
        tenant.full_clean()
        tenant.save()
        self.stdout.write(f"tenant {NAME} {'created' if created else 'updated'}: {api_url}")
