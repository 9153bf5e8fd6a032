"""``manage.py run_controller [--once] [--interval S]``: the controller loop (docs/metrics.md).

``--once`` exits non-zero when its single tick failed; the loop itself never
exits on a failing tick (it backs off).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.metrics.controller import Controller


class Command(BaseCommand):
    help = "Collect queue and Redis metrics every few seconds, publish them, record events. SIGTERM stops it."
    # No system checks at start: they import the whole URL configuration (every
    # view, the admin) into a process that serves no page.  boot.py's migrate
    # has run them before supervisord starts the controller.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")
        parser.add_argument("--interval", type=float, default=None,
                            help="seconds between ticks (default METRICS_CONTROLLER_INTERVAL, 5)")

    def handle(self, *args, once: bool, interval: float | None, **options) -> None:
        interval = settings.METRICS_CONTROLLER_INTERVAL if interval is None else interval
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds")
        controller = Controller(interval=interval)
        controller.run(once=once)
        if once and controller.tick_failed:
            raise CommandError("the controller's tick failed: its traceback is logged above")
        if once and controller.last_snapshot is None:
            self.stderr.write("no snapshot: another controller holds the leader lock")
