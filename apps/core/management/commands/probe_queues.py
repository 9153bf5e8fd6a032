"""``manage.py probe_queues``: is every declared queue consumed right now?"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from workers.probing import probe_all


class Command(BaseCommand):
    help = "Send a probe task through every declared queue and report who answered."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for all answers (default 10)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON document")

    def handle(self, *args, timeout: float, as_json: bool, **options) -> None:
        if timeout <= 0:
            raise CommandError("--timeout must be a positive number of seconds")
        try:
            results = probe_all(timeout)
        except Exception as exc:  # broker unreachable, result backend down
            raise CommandError(f"cannot probe queues: {type(exc).__name__}: {exc}") from None
        failed = [r.queue for r in results if not r.ok]
        if as_json:
            self.stdout.write(json.dumps({"ok": not failed, "queues": [r.as_dict() for r in results]}, indent=2))
        else:
            for r in results:
                where = f"{r.worker}  {r.round_trip_ms:.1f} ms" if r.ok else r.error
                self.stdout.write(f"{'ok  ' if r.ok else 'FAIL'}  {r.queue:<32} {where}")
        if failed:
            raise CommandError(f"{len(failed)} queue(s) without a consumer: {', '.join(failed)}")
